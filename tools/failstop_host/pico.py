"""The emulated Raspberry Pi Pico: the RPI_PICO firmware in rp2040js (Node.js), for tests,
demos and users without a Pico.

The board behaves like one on a desk: its USB serial is a pseudo-terminal that real
mpremote and ``failstop log`` open (the same path across resets and power cycles), its
flash is a file on the host, its SRAM survives the board's own (watchdog) resets and is
lost at power-off. The runner (``rp2040/run.mjs``, next to this module) does the chip:
watchdog resets, flash programming, the USB host side. This class talks to the runner
over its control socket, as the QEMU board talks to QEMU over QMP: boot events, memory
reads as a debug probe does them, and a boot cap that stops the board instead of letting
a boot loop run forever.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional

from .emulator import ConsoleBoard, EmulatorError, JsonLines, elf_symbol, spawn

RUNNER = Path(__file__).parent / "rp2040" / "run.mjs"
RETAINED_SYMBOL = "fs_retained"  # ports/rp2/failstop_hal.c
CACHE = Path(os.environ.get("FAILSTOP_CACHE", Path.home() / ".cache" / "failstop"))


class _Control(JsonLines):
    """The runner's control socket: {"cmd": ..., "id": N} commands; answers with the same
    "id", or {"error": ...}. The runner greets each client with its "boots" event."""

    def __init__(
        self, path: Path, timeout: float, alive: Callable[[], bool] = lambda: True
    ) -> None:
        super().__init__(path, timeout, "rp2040 runner", alive=alive, greeting=True)

    def command(self, cmd: str, timeout: float = 10.0, **arguments: Any) -> dict[str, Any]:
        reply = self.request({"cmd": cmd, **arguments}, cmd, timeout)
        if "error" in reply:
            raise EmulatorError(f"rp2040 runner: {cmd}: {reply['error']}")
        return reply


class PicoBoard(ConsoleBoard):
    """The RPI_PICO firmware (``firmware.uf2``, with ``firmware.elf`` next to it for the
    retained region's address) in rp2040js.

    ``start()`` powers the board on, ``power_cycle()`` turns it off and on again (SRAM
    lost, flash kept), ``stop()`` turns it off. ``port`` is the pseudo-terminal of its USB
    serial; ``output()`` is everything the board sent since power-on; ``resets`` counts its
    own resets since power-on; ``boot_reasons()`` says what started each boot."""

    def __init__(
        self,
        firmware: Path,
        flash: Optional[Path] = None,
        echo: Optional[BinaryIO] = None,
        node: str = "node",
        fast: bool = False,
        probe: Sequence[str] = (),
        probe_end: Optional[str] = None,
    ) -> None:
        fw = Path(firmware).resolve()
        self.firmware = fw.with_suffix(".uf2") if fw.suffix == ".elf" else fw
        self.elf = self.firmware.with_suffix(".elf")
        for f in (self.firmware, self.elf):
            if not f.exists():
                raise EmulatorError(f"firmware not found: {f}")
        self.retained_addr, self.retained_size = elf_symbol(self.elf, RETAINED_SYMBOL)
        # Fault-path measurement (see probes()): functions by name, from the ELF.
        self._probe = [elf_symbol(self.elf, name)[0] for name in probe]
        self._probe_end = elf_symbol(self.elf, probe_end)[0] if probe_end else None
        self.node = shutil.which(node)
        if self.node is None:
            raise EmulatorError(f"{node} not found (Debian: apt-get install nodejs)")
        rp2040js = Path(
            os.environ.get(
                "FAILSTOP_RP2040JS",
                CACHE / "rp2" / "node" / "node_modules" / "rp2040js" / "dist" / "esm" / "index.js",
            )
        )
        if not rp2040js.exists():
            raise EmulatorError(f"rp2040js not found ({rp2040js}): run `make deps-rp2`")
        self.bootrom = CACHE / "rp2" / "bootrom-b1.bin"
        if not self.bootrom.exists():
            raise EmulatorError(f"RP2040 bootrom not found ({self.bootrom}): run `make deps-rp2`")
        super().__init__(flash, echo, "failstop-pico-")
        self.log = Path(self._tmp.name) / "runner.log"
        # The bootloader's RPI-RP2 drive: there while the chip is in USB boot mode.
        self.drive = Path(self._tmp.name) / "RPI-RP2"
        self.fast = fast
        self._control: Optional[_Control] = None
        self._log_file: Optional[BinaryIO] = None
        # The first power-on writes `firmware` into the flash (as flashing a board does);
        # later ones keep the flash as the board left it (it may have been reflashed).
        self._flashed_once = False

    # --- power ------------------------------------------------------------------------

    def start(self, max_boots: int = 0, timeout: float = 20.0) -> None:
        """Power on. With ``max_boots`` > 0 the board's reset after that many boots stops
        it instead (``capped`` then says so), so a boot loop cannot run forever."""
        if self._proc is not None:
            raise EmulatorError("the board is already on")
        sock = Path(self._tmp.name) / "control.sock"
        cmd = [
            str(self.node),
            str(RUNNER),
            str(self.firmware),
            "--flash", str(self.flash),
            "--bootrom", str(self.bootrom),
            "--control", str(sock),
            "--log", str(self.log),
            "--max-boots", str(max_boots),
            "--drive", str(self.drive),
        ]  # fmt: skip
        if self.fast:
            cmd.append("--fast")
        if self._probe:
            cmd += ["--probe", ",".join(str(a) for a in self._probe)]
            if self._probe_end is not None:
                cmd += ["--probe-end", str(self._probe_end)]
        if self._flashed_once:
            cmd.append("--keep")  # a power cycle: the flash holds what the board has
        self._clear_output()
        self._log_file = open(self.log, "ab")  # noqa: SIM115 (lives as long as the process)
        self._proc = spawn(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log_file
        )
        try:
            proc = self._proc
            self._control = _Control(sock, timeout, alive=lambda: proc.poll() is None)
        except EmulatorError:
            self._stop_process()
            raise EmulatorError(f"the rp2040 runner did not start:\n{self.runner_log()}") from None
        self._start_pump()
        self._flashed_once = True

    def stop(self) -> None:
        """Power off (the runner saves the flash file and ends; SRAM is lost)."""
        self._stop_process()

    def pause(self) -> None:
        """Halt the CPU (as a debugger does); the board stays powered and on the bus."""
        self._command("halt")

    def resume(self) -> None:
        self._command("resume")

    def host_read(self, on: bool) -> None:
        """``False``: the host keeps the USB serial open and stops reading it (the board's
        CDC FIFO fills, its writes wait); ``True``: it reads again. A reset of the board
        ends it (its port goes away, a new one is read)."""
        self._command("host_read", on=on)

    def pin_reset(self) -> None:
        """Pull the RUN pin: a chip reset that keeps SRAM (the retained region), with the
        watchdog's REASON and SCRATCH registers cleared; the next boot reads ``pin``."""
        self._command("pin_reset")

    def stall_after(self, function: str, ms: float, skip: int = 0) -> None:
        """Stall the CPU for ``ms`` (the clock runs on) when it next returns from
        ``function`` (after ``skip`` returns), as a long interrupt handler or a flash
        write stalls it; ``stalls()`` lists them."""
        addr = elf_symbol(self.elf, function)[0]
        self._command("stall_after", addr=addr, skip=skip, ms=ms)

    def stalls(self) -> list[dict[str, Any]]:
        return self._events("stalled")

    def watchdog_resets(self) -> int:
        """Resets through the watchdog since power-on (its TRIGGER, or its expiry)."""
        return sum(1 for r in self.boot_reasons()[1:] if r in ("force", "timer"))

    def _command(self, cmd: str, **arguments: Any) -> dict[str, Any]:
        """A command to the runner, and its answer; never from the console pump."""
        self._not_from_pump(f"rp2040 runner {cmd}")
        if self._control is None:
            raise EmulatorError("the board is off")
        return self._control.command(cmd, **arguments)

    def _stop_process(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # the runner writes the flash file back
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for f in (proc.stdin, proc.stdout):
                if f is not None:
                    with contextlib.suppress(OSError):
                        f.close()
        if self._control is not None:
            self._control.close()
            self._control = None
        self._stop_pump_thread()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    # --- state ------------------------------------------------------------------------

    def _events(self, name: str) -> list[dict[str, Any]]:
        return [] if self._control is None else self._control.named(name)

    @property
    def resets(self) -> int:
        """The board's own resets since power-on (watchdog TRIGGER or expiry)."""
        return max(0, len(self.boot_reasons()) - 1) + (1 if self.capped else 0)

    def boot_reasons(self) -> list[str]:
        """What started each boot since power-on: "power_on", "force" (the watchdog's
        TRIGGER: failstop's reset, machine.reset()) or "timer" (the watchdog expired)."""
        reasons: list[str] = []
        for e in self._events("boots"):  # the runner's first message: the boots so far
            reasons = [str(r) for r in e["reasons"]]
        return reasons + [str(e["reason"]) for e in self._events("boot")]

    @property
    def capped(self) -> bool:
        """The boot cap stopped the board at a reset."""
        return any(e.get("capped") for e in self._events("boots")) or bool(self._events("capped"))

    def flashed(self) -> list[int]:
        """UF2 files the bootloader took since power-on: the blocks of each."""
        return [int(e["blocks"]) for e in self._events("flashed")]

    @property
    def locked_up(self) -> bool:
        """The CPU stopped on a fault inside the fault handler (a Cortex-M lockup)."""
        return bool(self._events("lockup"))

    def read_memory(self, addr: int, size: int) -> bytes:
        """Read the board's memory through the runner, as a debug probe would."""
        reply = self._command("read", addr=addr, size=size)
        return bytes.fromhex(str(reply["data"]))

    def probes(self) -> list[dict[str, Any]]:
        """Fault paths measured since power-on (``probe=`` names the entry functions): per
        reset, ``stack`` (bytes below the SP at entry, at most, until the reset), ``ns``
        (emulated time to the reset) and, with ``probe_end``, ``end_stack``/``end_ns`` up
        to that function's entry."""
        return self._events("probe")

    def boot_sim_ms(self) -> dict[int, float]:
        """When each boot after the first started: boot number -> emulated ms since power-on."""
        return {int(e["boot"]): float(e["sim_ms"]) for e in self._events("boot")}

    def status(self) -> dict[str, Any]:
        """The runner's view: boots, paused (capped), halted, bootloader, lockedUp; emulated
        ms since power-on (sim_ms), and when the device last took bytes from the host
        (in_sim_ms) and last sent bytes to it (out_sim_ms)."""
        return self._command("status")

    def runner_log(self) -> str:
        """The runner's event log ("[rp2040] boot 2 reason=force", ...)."""
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""
