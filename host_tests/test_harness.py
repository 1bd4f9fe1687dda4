"""Harness hygiene of the emulated boards (failstop_host.emulator): QMP answers matched by
request id, a bounded wait for QMP's greeting, the console log bounded, and emulators that
outlive the thread that started them but never the process that owns them."""

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

from failstop_host import emulator
from failstop_host.emulator import PROMPT, EmulatorError, JsonLines, _Qmp
from qemu_backend import QEMU_FW, qemu_board


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
    j = JsonLines(path, 5, "test", ids=True, on_event=lambda e: seen.append(e["event"]))
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
    monkeypatch.setattr(emulator, "OUTPUT_LIMIT", 4096)
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
