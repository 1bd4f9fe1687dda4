# A ~100-line device workload (the simulator's OOM sweep runs it, and the differential
# tests compare it on the unix firmware and the simulator): sample a sensor, filter,
# format log lines, keep a ring buffer, commit totals at a fail-stop commit point.
import failstop
import time

r = failstop.last()
if r:
    print("LAST", repr((r.seq, r.kind, r.exc_type, r.location)))

SAMPLES = 8
WINDOW = 4


class Sensor:
    """A deterministic sensor: a linear congruential generator, 0..1023."""

    def __init__(self, seed):
        self.state = seed

    def read(self):
        self.state = (self.state * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.state >> 8) & 0x3FF


class Ring:
    def __init__(self, size):
        self.items = [None] * size
        self.head = 0
        self.count = 0

    def push(self, item):
        self.items[self.head] = item
        self.head = (self.head + 1) % len(self.items)
        self.count = min(self.count + 1, len(self.items))

    def latest(self, n):
        out = []
        for i in range(min(n, self.count)):
            out.append(self.items[(self.head - 1 - i) % len(self.items)])
        return out


def moving_average(values):
    if not values:
        return 0
    return sum(values) // len(values)


def classify(level):
    if level > 800:
        return "HIGH"
    if level < 200:
        return "LOW"
    return "OK"


def log_line(n, raw, avg, state):
    return "%03d raw=%4d avg=%4d %s" % (n, raw, avg, state)


class Store:
    """Totals that must never be half-updated: changed only at the commit point."""

    def __init__(self):
        self.totals = {"HIGH": 0, "LOW": 0, "OK": 0}
        self.lines = 0

    def commit(self, counts, lines):
        with failstop.fragile():
            for key in ("HIGH", "LOW", "OK"):
                self.totals[key] += counts.get(key, 0)
            self.lines += len(lines)


def run(sensor, store, ring):
    counts = {}
    lines = []
    for n in range(SAMPLES):
        raw = sensor.read()
        ring.push(raw)
        avg = moving_average(ring.latest(WINDOW))
        state = classify(avg)
        counts[state] = counts.get(state, 0) + 1
        lines.append(log_line(n, raw, avg, state))
        if len(lines) == 16:
            failstop.mark("commit %d" % n)
            store.commit(counts, lines)
            counts = {}
            lines = []
        failstop.feed()
    if lines:
        store.commit(counts, lines)
    return lines


failstop.watchdog(5000)
t0 = time.ticks_ms()
store = Store()
ring = Ring(8)
tail = run(Sensor(2024), store, ring)
summary = ", ".join("%s=%d" % (k, store.totals[k]) for k in ("HIGH", "LOW", "OK"))
print("SUMMARY", store.lines, summary)
print("TAIL", tail[-1] if tail else None)
