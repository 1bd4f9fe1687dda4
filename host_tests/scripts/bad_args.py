# Bad input gets a clear TypeError/ValueError with a message.
import failstop

calls = [
    ("policy(1)", lambda: failstop.policy(1)),
    ("policy('NOPE')", lambda: failstop.policy("NOPE")),
    ("policy('OOM', 'EXPLODE')", lambda: failstop.policy("OOM", "EXPLODE")),
    ("policy('OOM', 3)", lambda: failstop.policy("OOM", 3)),
    ("policy('PANIC', 'RAISE')", lambda: failstop.policy("PANIC", "RAISE")),
    ("policy('WATCHDOG', 'RAISE')", lambda: failstop.policy("WATCHDOG", "RAISE")),
    ("watchdog('1')", lambda: failstop.watchdog("1")),
    ("watchdog(0)", lambda: failstop.watchdog(0)),
    ("watchdog(-5)", lambda: failstop.watchdog(-5)),
    ("mark(5)", lambda: failstop.mark(5)),
    ("mark('x' * 17)", lambda: failstop.mark("x" * 17)),
    ("keeper(1)", lambda: failstop.keeper(1)),
    ("crash_loop(0)", lambda: failstop.crash_loop(0)),
    ("crash_loop('3')", lambda: failstop.crash_loop("3")),
    ("crash_loop(3, 0)", lambda: failstop.crash_loop(3, 0)),
    ("_inject('OOM')", lambda: failstop._inject("OOM")),
    ("recoverable(1)", lambda: failstop.recoverable(1)),
    ("recoverable('NOPE')", lambda: failstop.recoverable("NOPE")),
    ("recoverable('PANIC')", lambda: failstop.recoverable("PANIC")),
]
for name, call in calls:
    try:
        call()
        print("NO ERROR", name)
    except (TypeError, ValueError) as e:
        print("ERR", name, type(e).__name__, str(e))
print("policy OOM", failstop.policy("OOM"), failstop.policy("OOM", "RAISE"), failstop.policy("OOM"))
failstop.mark("x" * 16)
tag = failstop.mark()
print("mark", repr(tag), repr(failstop.mark(None)), repr(failstop.mark()))
print("crash_loop", failstop.crash_loop(), failstop.crash_loop(5, 1000))
print("END")
