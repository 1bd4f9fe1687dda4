"""The MPS2_AN385 firmware in QEMU (``QemuBoard``), for tests, demos and users without
hardware. What every emulated board shares is in ``consoleboard``; the Pico is in ``pico``.

The board behaves like one on a desk: its UART is a pseudo-terminal that real mpremote and
``failstop log`` open (the same path across power cycles), its flash is a file on the host
(kept across resets and power cycles), its RAM starts zeroed at power-on and survives the
board's own resets (watchdog, SYSRESETREQ), and QEMU keeps running across those resets.

QEMU talks to this runner, not to the terminal: its console is a pipe that the runner copies
to the pseudo-terminal and to a log (so nothing the board prints is lost while no client is
connected), and QMP reports every guest reset and lets the runner read RAM the way a debug
probe would, or turn the next reset into a pause (the boot cap of a test).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional

from .consoleboard import (
    OUTPUT_LIMIT,
    PROMPT,
    PTY_BACKLOG,
    STDERR_LIMIT,
    ConsoleBoard,
    EmulatorError,
    JsonLines,
    elf_section,
    elf_symbol,
    spawn,
)

__all__ = [
    "OUTPUT_LIMIT",
    "PROMPT",
    "PTY_BACKLOG",
    "STDERR_LIMIT",
    "ConsoleBoard",
    "EmulatorError",
    "JsonLines",
    "QemuBoard",
    "elf_section",
    "elf_symbol",
    "spawn",
]

FLASH_SIZE = 16 * 1024 * 1024  # AN385's PSRAM at 0x21000000: the board's "flash"
RETAINED_SECTION = ".failstop_retained"


class _Qmp(JsonLines):
    """QEMU's QMP: {"execute": ...} commands, {"return": ...} or {"error": ...} answers."""

    def __init__(
        self,
        path: Path,
        timeout: float,
        alive: Callable[[], bool] = lambda: True,
        on_event: Optional[Callable[[dict[str, Any]], None]] = None,
    ) -> None:
        super().__init__(path, timeout, "QMP", alive=alive, greeting=True, on_event=on_event)
        self.command("qmp_capabilities")

    def command(self, name: str, timeout: float = 10.0, **arguments: Any) -> Any:
        msg: dict[str, Any] = {"execute": name}
        if arguments:
            msg["arguments"] = arguments
        reply = self.request(msg, name, timeout)
        if "error" in reply:
            raise EmulatorError(f"QMP {name}: {reply['error'].get('desc', reply['error'])}")
        return reply.get("return")


class QemuBoard(ConsoleBoard):
    """The MPS2_AN385 firmware in ``qemu-system-arm``.

    ``start()`` powers the board on, ``power_cycle()`` turns it off and on again (RAM lost,
    flash kept), ``stop()`` turns it off. ``port`` is the pseudo-terminal of its UART.
    Everything the board printed since power-on is in ``output()``; ``resets`` counts the
    board's own resets since power-on.
    """

    machine = "mps2-an385"

    def __init__(
        self,
        firmware: Path,
        flash: Optional[Path] = None,
        echo: Optional[BinaryIO] = None,
        qemu: str = "qemu-system-arm",
    ) -> None:
        self.firmware = Path(firmware).resolve()
        if not self.firmware.exists():
            raise EmulatorError(f"firmware not found: {self.firmware}")
        self.retained_addr, self.retained_size = elf_section(self.firmware, RETAINED_SECTION)
        self.qemu = shutil.which(qemu)
        if self.qemu is None:
            raise EmulatorError(f"{qemu} not found (Debian: apt-get install qemu-system-arm)")
        super().__init__(flash, echo, "failstop-qemu-")
        self._qmp: Optional[_Qmp] = None
        self._max_boots = 0
        self._stderr = bytearray()
        self._stderr_thread: Optional[threading.Thread] = None

    # --- power ------------------------------------------------------------------------

    def start(self, max_boots: int = 0, timeout: float = 10.0) -> None:
        """Power on. With ``max_boots`` > 0 the board's reset after that many boots pauses
        it instead (``capped`` then says so), so a boot loop cannot run forever."""
        if self._proc is not None:
            raise EmulatorError("the board is already on")
        if not self.flash.exists() or self.flash.stat().st_size != FLASH_SIZE:
            with open(self.flash, "wb") as f:
                f.truncate(FLASH_SIZE)  # erased flash: the firmware formats it
        qmp_path = Path(self._tmp.name) / "qmp.sock"
        if qmp_path.exists():
            qmp_path.unlink()
        cmd = [
            str(self.qemu),
            "-machine", f"{self.machine},memory-backend=flash",
            "-m", f"{FLASH_SIZE // (1024 * 1024)}M",
            "-object",
            f"memory-backend-file,id=flash,size={FLASH_SIZE},mem-path={self.flash},share=on",
            "-display", "none",
            "-monitor", "none",
            "-semihosting",
            "-chardev", "stdio,id=uart0,signal=off",
            "-serial", "chardev:uart0",
            "-qmp", f"unix:{qmp_path},server=on,wait=off",
            "-S",
            "-kernel", str(self.firmware),
        ]  # fmt: skip
        self._clear_output()
        self._proc = spawn(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        proc = self._proc
        self._stderr = bytearray()
        self._stderr_thread = threading.Thread(
            target=self._drain_stderr, args=(proc,), daemon=True, name="qemu-stderr"
        )
        self._stderr_thread.start()
        try:
            self._qmp = _Qmp(
                qmp_path, timeout, alive=lambda: proc.poll() is None, on_event=self._on_qmp_event
            )
        except EmulatorError:
            err = self._stop_process()
            raise EmulatorError(f"QEMU did not start: {err.strip() or 'no QMP socket'}") from None
        self._start_pump()
        self._max_boots = max_boots
        self._arm_cap(wait=True)
        self._command("cont")

    def stop(self) -> None:
        """Power off (QEMU ends; RAM is lost, the flash file stays)."""
        self._stop_process()

    def pause(self) -> None:
        """Stop the CPU (as a debugger halts it); the board stays powered."""
        self._command("stop")

    def resume(self) -> None:
        self._command("cont")

    def _command(self, name: str, **arguments: Any) -> Any:
        """A QMP command, and its answer; never from the console pump."""
        self._not_from_pump(f"QMP {name}")
        if self._qmp is None:
            raise EmulatorError("the board is off")
        return self._qmp.command(name, **arguments)

    def _stop_process(self) -> str:
        proc, self._proc = self._proc, None
        if self._qmp is not None:
            self._qmp.close()
            self._qmp = None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        if self._stderr_thread is not None:
            self._stderr_thread.join(5)
            self._stderr_thread = None
        self._stop_pump_thread()
        return self.stderr()

    def _drain_stderr(self, proc: subprocess.Popen[bytes]) -> None:
        """QEMU's own messages, read as they come (a full pipe would stop QEMU), the
        newest STDERR_LIMIT bytes kept."""
        assert proc.stderr is not None
        fd = proc.stderr.fileno()
        while True:
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            self._stderr += data
            if len(self._stderr) > STDERR_LIMIT:
                del self._stderr[: len(self._stderr) - STDERR_LIMIT]

    def stderr(self) -> str:
        """What QEMU itself printed (warnings, errors) in this power-on."""
        return bytes(self._stderr).decode(errors="replace")

    # --- state ------------------------------------------------------------------------

    @property
    def resets(self) -> int:
        """The board's own resets since power-on (watchdog, SYSRESETREQ)."""
        return 0 if self._qmp is None else len(self._qmp.named("RESET"))

    def events(self, name: str) -> list[dict[str, Any]]:
        """QMP events of this power-on, e.g. "WATCHDOG" (the hardware watchdog reset the
        board) or "RESET"."""
        if self._qmp is None:
            return []
        return self._qmp.named(name)

    def watchdog_resets(self) -> int:
        """QEMU's WATCHDOG events (QMP sends at most one a second: a lower bound)."""
        return len(self.events("WATCHDOG"))

    @property
    def capped(self) -> bool:
        """The boot cap turned a reset into a pause."""
        return self._qmp is not None and bool(self._qmp.named("SHUTDOWN"))

    def _arm_cap(self, wait: bool) -> None:
        # A reset that would start boot max_boots + 1 pauses the board instead.
        qmp = self._qmp
        if qmp is not None and self._max_boots > 0 and self.resets + 1 >= self._max_boots:
            msg = {
                "execute": "set-action",
                "arguments": {"reboot": "shutdown", "shutdown": "pause"},
            }
            if wait:
                self._command("set-action", reboot="shutdown", shutdown="pause")
            else:
                with contextlib.suppress(EmulatorError):
                    qmp.send(msg)

    def _on_qmp_event(self, event: dict[str, Any]) -> None:
        # In QMP's reader thread, as the event arrives: the command goes out without
        # waiting for its answer (the console pump sends no commands).
        if event.get("event") == "RESET":
            self._arm_cap(wait=False)

    def read_memory(self, addr: int, size: int) -> bytes:
        """Read the board's memory through QEMU, as a debug probe would (no firmware code)."""
        fd, path = tempfile.mkstemp(dir=self._tmp.name, suffix=".mem")
        os.close(fd)
        try:
            self._command("pmemsave", val=addr, size=size, filename=path)
            return Path(path).read_bytes()
        finally:
            os.unlink(path)

    def _resets_changed(self) -> None:
        pass  # the boot cap is armed from QMP's RESET event (_on_qmp_event)
