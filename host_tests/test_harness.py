"""Harness hygiene of the emulated boards (failstop_host.emulator, .pico): QMP's and the
Pico runner's answers matched by request id, a bounded wait for their greetings, a request
that fails at once when the emulator ends, no command from the console pump, the console
log bounded, and emulators that outlive the thread that started them but never the process
that owns them."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from backends import unavailable
from emulated_backend import at_repl
from failstop_host import consoleboard, emulator
from failstop_host.emulator import PROMPT, EmulatorError, JsonLines, _Qmp
from qemu_backend import QEMU_FW, qemu_board
from rp2_backend import pico_board


def fake_server(path: Path, serve) -> threading.Thread:  # type: ignore[no-untyped-def]
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)

    def run() -> None:
        conn, _ = srv.accept()
        with conn:
            serve(conn)
        srv.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_qmp_greeting_is_awaited_in_bounded_time(tmp_path: Path) -> None:
    path = tmp_path / "qmp.sock"
    fake_server(path, lambda conn: time.sleep(5))  # accepts, never greets
    t0 = time.monotonic()
    with pytest.raises(EmulatorError, match="no greeting"):
        _Qmp(path, timeout=1.0)
    assert time.monotonic() - t0 < 3


def test_qmp_socket_of_a_dead_emulator_fails_at_once(tmp_path: Path) -> None:
    t0 = time.monotonic()
    with pytest.raises(EmulatorError, match="ended early"):
        _Qmp(tmp_path / "never.sock", timeout=10.0, alive=lambda: False)
    assert time.monotonic() - t0 < 1


def test_answers_are_matched_by_request_id(tmp_path: Path) -> None:
    """Two commands from two threads, answered in the opposite order, with an event and
    the answer to a command sent without waiting in between: each gets its own answer."""
    import json

    def serve(conn: socket.socket) -> None:
        f = conn.makefile("rb")
        got = [json.loads(f.readline()) for _ in range(3)]
        for msg in reversed(got):
            conn.sendall(json.dumps({"return": msg["execute"], "id": msg["id"]}).encode() + b"\n")
            conn.sendall(b'{"event": "RESET"}\n')
        time.sleep(1)

    path = tmp_path / "j.sock"
    fake_server(path, serve)
    seen: list[str] = []
    j = JsonLines(path, 5, "test", on_event=lambda e: seen.append(e["event"]))
    answers: dict[str, object] = {}

    def ask(name: str) -> None:
        answers[name] = j.request({"execute": name}, name, 5)["return"]

    j.send({"execute": "quiet"})  # its answer is dropped
    threads = [threading.Thread(target=ask, args=(n,)) for n in ("first", "second")]
    for t in threads:
        t.start()
        time.sleep(0.1)
    for t in threads:
        t.join(5)
    assert answers == {"first": "first", "second": "second"}
    assert seen == ["RESET"] * 3
    j.close()


def test_console_log_is_bounded_with_stable_offsets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consoleboard, "OUTPUT_LIMIT", 4096)
    with qemu_board(tmp_path) as b:
        b.start()
        assert b.wait_for(re.escape(PROMPT), timeout=20)
        start = b.output_end()
        b.write(b"for i in range(400): print('line', i, 'x' * 40)\r\r")
        assert b.wait_for(rb"line 399 x+\r\n>>> ", timeout=30, start=start)
        assert len(b.output()) <= 4096 < b.output_end() - start
        assert b.output(start).endswith(b">>> ") and b"line 399" in b.output(b.output_end() - 200)


def test_emulator_outlives_the_thread_that_started_it(tmp_path: Path) -> None:
    with qemu_board(tmp_path) as b:
        t = threading.Thread(target=b.start)
        t.start()
        t.join(20)  # the thread is gone
        time.sleep(1.0)
        assert b.running, "QEMU ended with the thread that started it"
        assert b.wait_for(re.escape(PROMPT), timeout=20), b.output()


def test_emulator_ends_with_its_owner(tmp_path: Path) -> None:
    if not QEMU_FW.exists():
        pytest.skip("no MPS2_AN385 firmware")
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from failstop_host.emulator import QemuBoard\n"
        f"b = QemuBoard(Path({str(QEMU_FW)!r}), flash=Path({str(tmp_path / 'f.img')!r}))\n"
        "b.start()\n"
        "print(b._proc.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    pid = int(owner.stdout.readline())
    assert Path(f"/proc/{pid}/exe").resolve().name.startswith("qemu-system")
    owner.kill()  # SIGKILL: no finally, no atexit
    owner.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
        except OSError:
            break  # gone
        if state == "Z":
            break
        time.sleep(0.1)
    else:
        os.kill(pid, 9)
        pytest.fail("QEMU outlived the process that owned it")


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with_kids = (task / "children").read_text().split()
        out += [int(c) for c in with_kids]
    return out


def gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def test_simulated_boot_dies_with_its_driver(tmp_path: Path) -> None:
    """A device script that never ends, run by a driver that is killed (SIGKILL: no finally,
    as after pytest-timeout's os._exit or an OOM killer): the boot process goes too."""
    (tmp_path / "forever.py").write_text("while True:\n    pass\n")
    code = (
        "from pathlib import Path\n"
        "from failstop_host.sim.host import SimDevice\n"
        f"SimDevice(Path({str(tmp_path / 'sim')!r})).run(Path({str(tmp_path / 'forever.py')!r}),"
        " timeout=60)\n"
    )
    driver = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 20
        kids: list[int] = []
        while not kids and time.monotonic() < deadline:
            time.sleep(0.1)
            kids = children(driver.pid)
        assert kids, "the driver started no boot"
    finally:
        driver.kill()
        driver.wait()
    for pid in kids:
        if not gone(pid, 5):
            os.kill(pid, 9)
            pytest.fail("the simulated boot outlived its driver")


def test_simulator_without_fork_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from failstop_host.sim.host import SimDevice, SimError

    monkeypatch.delattr(os, "fork")
    with pytest.raises(SimError, match=r"has no os\.fork: run it on Linux or macOS"):
        SimDevice(tmp_path / "sim")


def test_simulator_refuses_an_unknown_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from failstop_host.sim import allocpoints
    from failstop_host.sim.host import SimDevice, SimError

    assert allocpoints.unsupported_python(sys.version_info) is None
    assert allocpoints.unsupported_python((3, 12, 4)) is None
    why = allocpoints.unsupported_python((3, 13, 0))
    assert why is not None and "supports CPython 3.9 to 3.12, not 3.13" in why
    monkeypatch.setattr(allocpoints, "SUPPORTED", ((3, 9), (3, 10)))
    if sys.version_info[:2] > (3, 10):
        with pytest.raises(SimError, match=r"supports CPython 3\.9 to 3\.10"):
            SimDevice(tmp_path / "sim")


# --- the Pico runner's control socket (failstop_host.pico._Control) ----------------------


def json_line(obj: object) -> bytes:
    import json

    return json.dumps(obj).encode() + b"\n"


def test_pico_control_greeting_is_awaited_in_bounded_time(tmp_path: Path) -> None:
    from failstop_host.pico import _Control

    path = tmp_path / "control.sock"
    fake_server(path, lambda conn: time.sleep(5))  # accepts, never sends its "boots" event
    t0 = time.monotonic()
    with pytest.raises(EmulatorError, match="no greeting"):
        _Control(path, timeout=1.0)
    assert time.monotonic() - t0 < 3


def test_pico_control_answers_are_matched_by_request_id(tmp_path: Path) -> None:
    """The fake runner greets, takes two commands from two threads and answers them in the
    opposite order, an event in between: each thread gets its own answer, and the greeting
    is kept as the "boots" event."""
    import json

    def serve(conn: socket.socket) -> None:
        conn.sendall(json_line({"event": "boots", "reasons": ["power_on"], "capped": False}))
        f = conn.makefile("rb")
        got = [json.loads(f.readline()) for _ in range(2)]
        for msg in reversed(got):
            conn.sendall(json_line({"event": "boot", "boot": 2, "reason": "force"}))
            conn.sendall(json_line({"reply": msg["cmd"], "id": msg["id"]}))
        time.sleep(1)

    from failstop_host.pico import _Control

    path = tmp_path / "control.sock"
    fake_server(path, serve)
    c = _Control(path, timeout=5)
    assert c.named("boots") == [{"event": "boots", "reasons": ["power_on"], "capped": False}]
    answers: dict[str, object] = {}

    def ask(name: str) -> None:
        answers[name] = c.command(name)["reply"]

    threads = [threading.Thread(target=ask, args=(n,)) for n in ("first", "second")]
    for t in threads:
        t.start()
        time.sleep(0.1)
    for t in threads:
        t.join(5)
    assert answers == {"first": "first", "second": "second"}
    assert len(c.named("boot")) == 2
    c.close()


def test_pico_control_request_fails_at_once_when_the_runner_ends(tmp_path: Path) -> None:
    """A runner that ended (its process gone, the socket still open, e.g. held by a child):
    the request fails within a fraction of a second, not at its timeout."""

    def serve(conn: socket.socket) -> None:
        conn.sendall(json_line({"event": "boots", "reasons": [], "capped": False}))
        time.sleep(10)  # reads nothing, answers nothing

    from failstop_host.pico import _Control

    path = tmp_path / "control.sock"
    fake_server(path, serve)
    dead = threading.Event()
    c = _Control(path, timeout=5, alive=lambda: not dead.is_set())
    threading.Timer(0.3, dead.set).start()
    t0 = time.monotonic()
    with pytest.raises(EmulatorError, match="emulator ended"):
        c.command("status", timeout=30)
    assert time.monotonic() - t0 < 2
    c.close()


def test_the_reader_thread_cannot_wait_for_an_answer(tmp_path: Path) -> None:
    """An event handler (in the reader thread) that asks and waits would wait for itself:
    it is refused at once; sending without waiting is allowed."""

    def serve(conn: socket.socket) -> None:
        import json

        conn.sendall(json_line({"event": "boots", "reasons": [], "capped": False}))
        f = conn.makefile("rb")
        for line in f:
            msg = json.loads(line)
            conn.sendall(json_line({"reply": msg["cmd"], "id": msg["id"]}))
            if msg["cmd"] == "go":
                conn.sendall(json_line({"event": "boot", "boot": 2, "reason": "force"}))

    path = tmp_path / "control.sock"
    fake_server(path, serve)
    outcome: list[str] = []

    def on_event(event: dict[str, object]) -> None:
        try:
            j.request({"cmd": "status"}, "status", 5)
            outcome.append("answered")
        except EmulatorError as e:
            outcome.append(str(e))
        j.send({"cmd": "status"})

    j = JsonLines(path, 5, "test", greeting=True, on_event=on_event)
    j.request({"cmd": "go"}, "go", 5)
    deadline = time.monotonic() + 5
    while not outcome and time.monotonic() < deadline:
        time.sleep(0.05)
    assert outcome and "reader thread cannot wait" in outcome[0]
    assert j.request({"cmd": "ping"}, "ping", 5)["reply"] == "ping"
    j.close()


def rp2040_runner(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path, bytes]:
    """The real rp2040js runner on an erased flash (the bootrom runs, finds no boot2 and
    waits in USB boot mode): its control socket path and the bootrom's bytes."""
    import shutil

    from failstop_host import pico

    node = shutil.which("node")
    rp2040js = pico.CACHE / "rp2" / "node" / "node_modules" / "rp2040js"
    bootrom = pico.CACHE / "rp2" / "bootrom-b1.bin"
    if node is None or not rp2040js.exists() or not bootrom.exists():
        # Skipped only where the tools are truly absent; `make test` (FAILSTOP_REQUIRE_ALL)
        # installs them, so there this fails.
        unavailable("node, rp2040js or the RP2040 bootrom absent (make deps)")
    (tmp_path / "erased.bin").write_bytes(b"\xff" * 4096)
    sock = tmp_path / "control.sock"
    cmd = [
        node, str(pico.RUNNER), str(tmp_path / "erased.bin"),
        "--flash", str(tmp_path / "flash.img"), "--bootrom", str(bootrom),
        "--control", str(sock), "--drive", str(tmp_path / "drive"), "--log", str(tmp_path / "log"),
    ]  # fmt: skip
    proc = emulator.spawn(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    return proc, sock, bootrom.read_bytes()


def test_pico_runner_answers_carry_request_ids(tmp_path: Path) -> None:
    """Eight threads read different bootrom words through the real runner at once: each
    gets the bytes it asked for (an answer taken for another's would show other bytes)."""
    from failstop_host.pico import _Control

    proc, sock, rom = rp2040_runner(tmp_path)
    try:
        c = _Control(sock, timeout=20, alive=lambda: proc.poll() is None)
        assert c.named("boots")[0]["reasons"] == ["power_on"]
        wrong: list[str] = []

        def reader(k: int) -> None:
            for i in range(25):
                addr = 16 * (k * 25 + i)
                got = bytes.fromhex(c.command("read", addr=addr, size=16)["data"])
                if got != rom[addr : addr + 16]:
                    wrong.append(f"thread {k} read {addr:#x}: {got.hex()}")

        threads = [threading.Thread(target=reader, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not wrong, wrong[:3]
        with pytest.raises(EmulatorError, match="unknown command"):
            c.command("nope")
        c.close()
    finally:
        proc.kill()
        proc.wait()


def test_pico_runner_that_ends_fails_the_request(tmp_path: Path) -> None:
    from failstop_host.pico import _Control

    proc, sock, _rom = rp2040_runner(tmp_path)
    try:
        c = _Control(sock, timeout=20, alive=lambda: proc.poll() is None)
        c.command("halt")
        proc.kill()
        t0 = time.monotonic()
        with pytest.raises(EmulatorError, match=r"emulator (ended|went away)"):
            c.command("status", timeout=30)
        assert time.monotonic() - t0 < 2
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("kind", ["qemu", "rp2"])
def test_console_pump_sends_no_commands(kind: str, tmp_path: Path) -> None:
    """A hook of the console pump (it runs when the board resets) that asks the emulator
    for memory is refused at once: the emulator may be waiting for the pump to take its
    console output, and would never answer. The same request from the test's thread works."""
    b = qemu_board(tmp_path) if kind == "qemu" else pico_board(tmp_path)
    with at_repl(b):
        outcome: list[str] = []

        def hook() -> None:
            try:
                b.read_memory(b.retained_addr, 4)
                outcome.append("answered")
            except EmulatorError as e:
                outcome.append(str(e))

        b._resets_changed = hook  # type: ignore[method-assign]
        start = b.output_end()
        b.write(b"import machine\rmachine.reset()\r")
        assert b.wait_for(re.escape(PROMPT), timeout=30, start=start), b.output(start)
        deadline = time.monotonic() + 10  # QMP's RESET event may come after the banner
        while not outcome and time.monotonic() < deadline:
            time.sleep(0.05)
        assert outcome, "the board did not reset"
        assert all("console pump sends no commands" in o for o in outcome), outcome
        assert len(b.read_memory(b.retained_addr, 4)) == 4
