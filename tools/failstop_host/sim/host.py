"""The simulated board as the host drives it: power it on with a program, let it run
through every fail-stop reboot (each boot is a process forked from this one, ended at
its fault), read its console and its retained region.

    dev = SimDevice(Path("/tmp/board"))
    run = dev.run("firmware/main.py", oom_at=12)
    run.boots            # boots of this run (the faulting one and the reboot)
    run.records[-1]      # the newest record, decoded by the host codec
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType
from typing import Optional, TextIO, Union

from .. import codec
from . import allocpoints, child
from .config import BootPlan, Inject, Resources
from .retained import KIND, RC_POWER_ON, RC_UNKNOWN, Retained

BOOT_LIMIT_EXIT = 75  # as the unix port: the boot cap stopped a reset
PathLike = Union[str, "os.PathLike[str]"]


class SimError(RuntimeError):
    """The simulator itself failed (not the program): the message has the output."""


class SimTimeout(TimeoutError):
    """The board was still running after the run's wall-clock timeout."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.output = output


@dataclass(frozen=True)
class BootReport:
    """How one boot ended.

    end: "reset" (a fail-stop fault or machine.reset), "exit" (the program ended),
        "halt" (HALT policy), "hang" (hung with no watchdog armed), "time_limit"
        (the run's virtual-time budget ran out).
    kind: the fault kind that ended the boot ("" if none).
    steps/allocs/max_depth/uptime_ms: instructions run, allocation points passed,
        deepest Python stack, virtual uptime.
    """

    end: str
    code: Optional[int]
    kind: str
    steps: int
    allocs: int
    max_depth: int
    uptime_ms: int


@dataclass
class SimRun:
    """One run from power-on until the program ends, halts, hangs or hits the boot cap."""

    output: str
    end: str  # "exit", "boot_limit", "halt", "hang", "time_limit"
    exit_code: Optional[int]
    region: codec.Region
    boot_reports: list[BootReport] = field(default_factory=list)
    first_seq: int = 1  # records of this run have seq >= first_seq

    @property
    def boots(self) -> int:
        """Boots in this run (1 + the reboots)."""
        return len(self.boot_reports)

    @property
    def reboots(self) -> int:
        return max(0, self.boots - 1)

    @property
    def records(self) -> tuple[codec.Record, ...]:
        """Every record in the retained region, oldest first."""
        return self.region.records

    @property
    def new_records(self) -> tuple[codec.Record, ...]:
        """The records written during this run."""
        return tuple(r for r in self.region.records if r.seq >= self.first_seq)

    @property
    def record(self) -> Optional[codec.Record]:
        """The newest record written during this run, or None."""
        new = self.new_records
        return new[-1] if new else None

    def lines(self, prefix: str) -> list[str]:
        """Console lines starting with ``prefix`` and a space, without that prefix."""
        return [
            ln[len(prefix) + 1 :] for ln in self.output.splitlines() if ln.startswith(prefix + " ")
        ]


class _Programs:
    """Programs compiled once in this (warm) process: every boot inherits the code
    objects and their allocation-point tables."""

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[int, int, CodeType]] = {}

    def get(self, path: Path, name: str) -> Optional[CodeType]:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        hit = self._cache.get(path)
        if hit is not None and hit[0] == st.st_mtime_ns and hit[1] == st.st_size:
            code = hit[2]
            if code.co_filename == name:
                return code
        code = compile(path.read_bytes(), name, "exec", dont_inherit=True)
        allocpoints.prepare(code)
        self._cache[path] = (st.st_mtime_ns, st.st_size, code)
        return code


_PROGRAMS = _Programs()


class SimDevice:
    """A simulated board with retained RAM in ``retained`` (default ``workdir/retained.ram``).

    The retained region survives every reset and every run, as RAM survives a reset:
    ``erase()`` loses it (power removed). Relative program paths are taken from ``base``
    (default: the working directory)."""

    def __init__(
        self,
        workdir: PathLike,
        resources: Optional[Resources] = None,
        retained: Optional[PathLike] = None,
        base: Optional[PathLike] = None,
    ) -> None:
        self.base = Path(base) if base is not None else None
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.resources = resources or Resources()
        self.retained = Path(retained) if retained is not None else self.workdir / "retained.ram"

    def _path(self, p: PathLike) -> Path:
        """A path given by the user: relative ones are taken from ``base`` (the pytest
        fixture sets the project's root directory), else from the working directory."""
        path = Path(p)
        if not path.is_absolute() and self.base is not None:
            path = self.base / path
        return path.resolve()

    # --- reading the board ------------------------------------------------------------

    def region(self) -> codec.Region:
        """The retained region as it is now (empty RAM when never booted)."""
        if not self.retained.exists():
            return codec.decode_region(bytes(codec.HEADER_SIZE + 3 * codec.SLOT_SIZE))
        return codec.decode_region(self.retained.read_bytes())

    def erase(self) -> None:
        """Lose the retained RAM (as when power is removed for long enough)."""
        self.retained.unlink(missing_ok=True)

    # --- running ----------------------------------------------------------------------

    def run(
        self,
        script: PathLike,
        *,
        root: Optional[PathLike] = None,
        max_boots: int = 12,
        timeout: float = 60.0,
        inject: Optional[Inject] = None,
        oom_at: Optional[int] = None,
        stack_at: Optional[int] = None,
        hang_at: Optional[int] = None,
        max_ms: Optional[int] = None,
        echo: Optional[TextIO] = None,
    ) -> SimRun:
        """Power the board on with ``script`` as its main program and run it through
        every reboot until it ends (or halts, hangs, or reaches ``max_boots``).

        root: the board's filesystem (boot.py, modules); default the script's folder.
        oom_at/stack_at/hang_at: shorthands for ``inject=Inject(...)`` (boot 1).
        max_ms: virtual time a boot may run before the run stops ("time_limit").
        echo: also write the console there as it comes.
        """
        path = self._path(script)
        base = self._path(root) if root is not None else path.parent
        try:
            name = str(path.relative_to(base))
        except ValueError:
            raise ValueError(f"{path} is not inside the board's root {base}") from None
        if not path.is_file():
            raise FileNotFoundError(f"no such program: {path}")
        if inject is None and (oom_at or stack_at or hang_at):
            inject = Inject(oom_at=oom_at, stack_at=stack_at, hang_at=hang_at)
        elif oom_at or stack_at or hang_at:
            raise ValueError("give either inject= or oom_at/stack_at/hang_at")
        return self._run(base, name, None, max_boots, timeout, inject, max_ms, echo)

    def exec(self, code: str, timeout: float = 30.0, *, root: Optional[PathLike] = None) -> str:
        """Power the board on and type ``code`` at its REPL (not a main program: an
        escaping exception is printed, not a fault); returns the console output."""
        base = self._path(root) if root is not None else self.workdir.resolve()
        return self._run(base, None, code, 1, timeout, None, None, None).output

    def measure(self, script: PathLike, **kw: object) -> BootReport:
        """Run ``script`` once from power-on with no fault injected and return the report
        of its first boot: how many instructions and allocation points it passes."""
        run = self.run(script, max_boots=1, **kw)  # type: ignore[arg-type]
        return run.boot_reports[0]

    def sweep_oom(
        self, script: PathLike, *, max_boots: int = 2, **kw: object
    ) -> Iterator[tuple[int, SimRun]]:
        """OOM injected at every allocation point of the script's first boot, one run
        per point (k = 1 .. the count from a clean run)."""
        total = self.measure(script, **kw).allocs
        for k in range(1, total + 1):
            self.erase()
            yield k, self.run(script, oom_at=k, max_boots=max_boots, **kw)  # type: ignore[arg-type]

    # --- the boot loop ----------------------------------------------------------------

    def _run(
        self,
        root: Path,
        main: Optional[str],
        repl: Optional[str],
        max_boots: int,
        timeout: float,
        inject: Optional[Inject],
        max_ms: Optional[int],
        echo: Optional[TextIO],
    ) -> SimRun:
        if max_boots < 1:
            raise ValueError("max_boots must be 1 or more")
        programs: dict[str, CodeType] = {}
        for name in filter(None, (main, "boot.py")):
            code = _PROGRAMS.get(root / name, name)
            if code is not None:
                programs[name] = code
        first_seq = self._next_seq()
        deadline = time.monotonic() + timeout
        console = _Console(echo)
        reports: list[BootReport] = []
        hw = RC_POWER_ON
        try:
            while True:
                plan = BootPlan(
                    root=root,
                    main=main,
                    repl=repl,
                    resources=self.resources,
                    inject=inject if inject and inject.boot == len(reports) + 1 else None,
                    hw_cause=hw,
                    max_ms=max_ms,
                    programs=programs,
                )
                rep = self._boot(plan, console, deadline)
                reports.append(rep)
                if rep.end != "reset":
                    end, exit_code = rep.end, rep.code
                    break
                if len(reports) >= max_boots:
                    console.write(
                        f"failstop: boot limit reached (max_boots={max_boots}), not resetting\r\n"
                    )
                    end, exit_code = "boot_limit", BOOT_LIMIT_EXIT
                    break
                hw = RC_UNKNOWN
        finally:
            console.close()
        return SimRun(console.text(), end, exit_code, self.region(), reports, first_seq)

    def _next_seq(self) -> int:
        region = self.region()
        if region.header is not None:
            return region.header.next_seq
        return max((r.seq for r in region.records), default=0) + 1

    def _boot(self, plan: BootPlan, console: _Console, deadline: float) -> BootReport:
        status_r, status_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the board, for one boot
            try:
                os.close(status_r)
                os.close(console.read_fd)
                child.boot(plan, self.retained, console.write_fd, status_w)
            except BaseException:
                with contextlib.suppress(BaseException):
                    os.write(console.write_fd, traceback.format_exc().encode())
            finally:
                os._exit(70)
        os.close(status_w)
        try:
            wstatus = console.wait(pid, deadline)
            data = b""
            while True:
                chunk = os.read(status_r, 4096)
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(status_r)
        if wstatus is None:
            raise SimTimeout(
                f"the board was still running after the timeout:\n{console.text()}",
                console.text(),
            )
        if data:
            st = json.loads(data.decode().splitlines()[0])
            return BootReport(
                end=st["end"],
                code=st["code"],
                kind=codec.KINDS.get(st["kind"], ""),
                steps=st["steps"],
                allocs=st["allocs"],
                max_depth=st["max_depth"],
                uptime_ms=st["uptime_ms"],
            )
        if os.WIFSIGNALED(wstatus):
            # The process of the boot died by a signal: a hard fault nobody recorded.
            sig = os.WTERMSIG(wstatus)
            self._posthoc_hardfault(sig)
            console.write(f"failstop: HARDFAULT (signal {sig}) -> REBOOT\r\n")
            return BootReport("reset", None, "HARDFAULT", 0, 0, 0, 0)
        raise SimError(f"the simulator failed in a boot:\n{console.text()}")

    def _posthoc_hardfault(self, sig: int) -> None:
        """Record a boot that died without its fault path (POSTHOC, as the firmware
        records a reset whose early warning never ran)."""
        ret = Retained(self.retained)
        try:
            if not ret.load_header():
                return
            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = "?"
            ret.write_record(
                kind=KIND["HARDFAULT"],
                action=1,
                flags=codec.FLAG_POSTHOC,
                uptime_ms=0,
                heap_free=None,
                alloc_size=0,
                stack_used=0,
                depth=0,
                exc_type="",
                message=f"signal {sig} ({name}), no record",
                frames=(),
            )
            ret.before_reset(KIND["HARDFAULT"], 0)
        finally:
            ret.close()


class _Console:
    """The board's console: a pipe every boot writes to, read while the boot runs."""

    def __init__(self, echo: Optional[TextIO]) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self.echo = echo
        self._buf = bytearray()

    def write(self, text: str) -> None:
        data = text.encode()
        self._buf += data
        if self.echo is not None:
            self.echo.write(text)
            self.echo.flush()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.read_fd, 65536)
            except BlockingIOError:
                return
            if not chunk:
                return
            self._buf += chunk
            if self.echo is not None:
                self.echo.write(chunk.decode(errors="replace"))
                self.echo.flush()

    def wait(self, pid: int, deadline: float) -> Optional[int]:
        """Read the console until the boot's process ends; its wait status, or None
        (the process is killed) when the deadline passes first."""
        sel = selectors.DefaultSelector()
        sel.register(self.read_fd, selectors.EVENT_READ)
        pidfd = -1
        try:
            if hasattr(os, "pidfd_open"):
                try:
                    pidfd = os.pidfd_open(pid)
                    sel.register(pidfd, selectors.EVENT_READ)
                except OSError:
                    pidfd = -1
            while True:
                done, wstatus = os.waitpid(pid, os.WNOHANG)
                if done:
                    self._drain()
                    return wstatus
                left = deadline - time.monotonic()
                if left <= 0:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    self._drain()
                    return None
                for _key, _ev in sel.select(min(left, 0.05 if pidfd < 0 else left)):
                    pass
                self._drain()
        finally:
            sel.close()
            if pidfd >= 0:
                os.close(pidfd)

    def text(self) -> str:
        return self._buf.decode(errors="replace")

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self.write_fd)
