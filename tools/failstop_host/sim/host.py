"""The simulated board as the host drives it: power it on with a program, let it run
through every fail-stop reboot (each boot is a process forked from this one, ended at
its fault), read its console and its retained region.

    dev = SimDevice("/tmp/board")
    run = dev.run("firmware/main.py", oom_at=12)
    run.boots            # boots of this run (the faulting one and the reboot)
    run.record           # the record this run wrote, decoded by the host codec
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
import selectors
import shutil
import signal
import sys
import time
import traceback
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType
from typing import Any, Optional, TextIO, Union

from .. import codec
from . import allocpoints, child
from .api import MACHINE_OWN
from .config import BootPlan, Inject, OomAt, Resources
from .procs import die_with_parent
from .retained import KIND, NO_RESET, RC_FAULT, RC_POWER_ON, RC_UNKNOWN, REGION_SIZE, Retained

BOOT_LIMIT_EXIT = 75  # as the unix port: the boot cap stopped a reset
# Modules MicroPython's firmware has frozen in flash, imported here once, before any boot
# forks: a boot inherits them, so importing one costs the program's heap nothing, as on a
# board (CPython's asyncio and what it imports take about 2 MB: nearly the whole default
# heap). A boot whose Resources.missing_modules names one drops it (loader.install).
FROZEN = ("asyncio",)
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
    hw_next: the hardware reset cause the next boot sees (retained.RC_WATCHDOG after a
        bite with no early warning; 0: the cause the firmware left).
    """

    end: str
    code: Optional[int]
    kind: str
    steps: int
    allocs: int
    max_depth: int
    uptime_ms: int
    hw_next: int = 0


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
        self._cache: dict[tuple[Path, str], tuple[int, int, CodeType]] = {}

    def get(self, path: Path, name: str) -> Optional[CodeType]:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        hit = self._cache.get((path, name))
        if hit is not None and hit[0] == st.st_mtime_ns and hit[1] == st.st_size:
            return hit[2]
        code = compile(path.read_bytes(), name, "exec", dont_inherit=True)
        allocpoints.prepare(code)
        self._cache[(path, name)] = (st.st_mtime_ns, st.st_size, code)
        return code


_PROGRAMS = _Programs()


def _report(data: bytes) -> tuple[BootReport, int]:
    st = json.loads(data.decode().splitlines()[0])
    rep = BootReport(
        end=st["end"],
        code=st["code"],
        kind=codec.KINDS.get(st["kind"], ""),
        steps=st["steps"],
        allocs=st["allocs"],
        max_depth=st["max_depth"],
        uptime_ms=st["uptime_ms"],
        hw_next=st.get("hw_next", 0),
    )
    return rep, st.get("console_pos", -1)


def _fork_boot(plan: BootPlan, retained: Path, console_fd: int, status_w: int) -> int:
    """Fork the process of one boot; its pid."""
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the board, for one boot
        try:
            die_with_parent(parent)
            child.boot(plan, retained, console_fd, status_w)
        except BaseException:
            with contextlib.suppress(BaseException):
                os.write(console_fd, traceback.format_exc().encode())
        finally:
            os._exit(70)
    return pid


def _read_all(fd: int) -> bytes:
    data = b""
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            return data
        data += chunk


@dataclass
class _Run:
    """A run in progress (the sweep keeps many)."""

    retained: Path
    reports: list[BootReport]
    out: bytearray
    end: str = ""
    exit_code: Optional[int] = None


class SimDevice:
    """A simulated board with retained RAM in ``retained`` (default ``workdir/retained.ram``).

    The retained region survives every reset and every run, as RAM survives a reset:
    ``erase()`` loses it (power removed). Relative program paths are taken from ``base``
    (default: the working directory).

    ``machine_stubs``: names the program finds in ``machine`` besides the simulator's own
    ``panic``, ``reset`` and ``WDT``, e.g. ``{"Pin": FakePin}`` (any object: a class, a
    function, a module). Each boot is a process forked from this one, so the stubs need
    no pickling, and what they record stays in the boot's process: have them print (the
    console is in the run's output) or write files. ``timeout``: the default wall-clock
    timeout of ``run`` (60 s) and ``exec`` (30 s)."""

    def __init__(
        self,
        workdir: PathLike,
        resources: Optional[Resources] = None,
        retained: Optional[PathLike] = None,
        base: Optional[PathLike] = None,
        machine_stubs: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = None,
    ) -> None:
        why = allocpoints.unsupported_python((sys.version_info.major, sys.version_info.minor))
        if why is not None:
            raise SimError(why)
        if not hasattr(os, "fork"):
            raise SimError(
                "the failstop simulator runs each boot in a forked process and this platform "
                f"({sys.platform}) has no os.fork: run it on Linux or macOS (on Windows: WSL)"
            )
        self.base = Path(base) if base is not None else None
        self.workdir = Path(workdir).resolve()  # boots run in the board's root
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.resources = resources or Resources()
        self.retained = (
            Path(retained).resolve() if retained is not None else self.workdir / "retained.ram"
        )
        self.on = False  # the last run ended at the REPL: exec() types into it, no reset
        self.consoles: list[str] = []  # the console output of each run, in order
        self.machine_stubs = _machine_stubs(machine_stubs or {})
        for name in FROZEN:
            importlib.import_module(name)
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive")
        self.timeout = timeout

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
        return _region(self.retained)

    def erase(self) -> None:
        """Lose the retained RAM (as when power is removed for long enough)."""
        self.retained.unlink(missing_ok=True)
        self.on = False

    # --- running ----------------------------------------------------------------------

    def run(
        self,
        script: PathLike,
        *,
        root: Optional[PathLike] = None,
        max_boots: int = 12,
        timeout: Optional[float] = None,
        inject: Optional[Inject] = None,
        oom_at: Optional[OomAt] = None,
        stack_at: Optional[int] = None,
        hang_at: Optional[int] = None,
        max_ms: Optional[int] = None,
        echo: Optional[TextIO] = None,
    ) -> SimRun:
        """Power the board on with ``script`` as its main program and run it through
        every reboot until it ends (or halts, hangs, or reaches ``max_boots``).

        root: the board's filesystem (boot.py, modules); default the script's folder.
        oom_at/stack_at/hang_at: shorthands for ``inject=Inject(...)`` (boot 1);
            ``oom_at`` is the k-th allocation point or a source location,
            ``("main.py", 10)`` (see Inject).
        max_ms: virtual time a boot may run before the run stops ("time_limit").
        echo: also write the console there as it comes.
        """
        base, name = self._program(script, root)
        if oom_at or stack_at or hang_at:
            if inject is not None:
                raise ValueError("give either inject= or oom_at/stack_at/hang_at")
            inject = Inject(oom_at=oom_at, stack_at=stack_at, hang_at=hang_at)
        if inject is not None and inject.oom_location is not None:
            _check_location(base, inject.oom_location)
        timeout = timeout if timeout is not None else self.timeout or 60.0
        return self._run(base, name, None, max_boots, timeout, inject, max_ms, echo)

    def exec(
        self, code: str, timeout: Optional[float] = None, *, root: Optional[PathLike] = None
    ) -> str:
        """Type ``code`` at the board's REPL (not a main program: an escaping exception is
        printed, not a fault); returns the console output. A board whose last run ended
        at the REPL (``on``) is not reset: as mpremote's soft reset, the boot goes on
        (no boot counted, same reset cause, safe mode kept). Otherwise it is powered on."""
        base = self._path(root) if root is not None else self.workdir.resolve()
        timeout = timeout if timeout is not None else self.timeout or 30.0
        return self._run(base, None, code, 1, timeout, None, None, None, self.on).output

    def measure(
        self, script: PathLike, *, root: Optional[PathLike] = None, max_ms: Optional[int] = None
    ) -> BootReport:
        """Run ``script`` once from power-on, nothing injected, and report its first boot:
        instructions, allocation points (the k of ``oom_at``), deepest stack. The run
        uses a copy of the retained RAM: the board's is left as it is."""
        scratch = self.workdir / "measure.ram"
        shutil.copyfile(self.retained, scratch) if self.retained.exists() else scratch.unlink(
            missing_ok=True
        )
        real, self.retained, on = self.retained, scratch, self.on
        try:
            return self.run(script, root=root, max_boots=1, max_ms=max_ms).boot_reports[0]
        finally:
            self.retained, self.on = real, on

    def sweep_oom(
        self,
        script: PathLike,
        *,
        root: Optional[PathLike] = None,
        max_boots: int = 2,
        max_ms: Optional[int] = None,
        timeout: float = 600.0,
        jobs: Optional[int] = None,
    ) -> list[SimRun]:
        """One run per allocation point of the first boot, the OOM injected there:
        ``result[k - 1]`` is ``run(script, oom_at=k, max_boots=max_boots)``, each from the
        retained RAM the board has now (which the sweep leaves as it is).

        The runs are not started from scratch: one traced run forks the run of point k
        at point k (so the sweep costs one run plus one fault and reboot per point), and
        the reboots run ``jobs`` at a time (default: one per CPU)."""
        base, name = self._program(script, root)
        jobs = jobs or os.cpu_count() or 1
        deadline = time.monotonic() + timeout
        d = self.workdir / "sweep"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        start = self.region().raw
        first_seq = _next_seq(self.region())
        main_ram = d / "main.ram"
        main_ram.write_bytes(start if len(start) == REGION_SIZE else bytes(REGION_SIZE))
        programs = self._programs(base, name)
        plan = self._plan(base, name, None, None, RC_POWER_ON, max_ms, programs)
        plan.sweep_dir = d
        main_out = d / "main.out"
        with open(main_out, "wb") as f:
            rep = self._boot_to_end(plan, main_ram, f.fileno(), deadline)
        head = main_out.read_bytes()
        runs: list[_Run] = []
        for k in range(1, rep.allocs + 1):
            status = d / f"{k}.status"
            if not status.exists() or not status.stat().st_size:
                raise SimError(f"the sweep's run for oom_at={k} died without a report")
            krep, pos = _report(status.read_bytes())
            out = bytearray(head[:pos] + (d / f"{k}.out").read_bytes())
            runs.append(_Run(d / f"{k}.ram", [krep], out))
        reboot = self._plan(base, name, None, None, RC_UNKNOWN, max_ms, programs)
        self._continue_all(runs, reboot, max_boots, jobs, deadline, d)
        return [
            SimRun(
                r.out.decode(errors="replace"),
                r.end,
                r.exit_code,
                _region(r.retained),
                r.reports,
                first_seq,
            )
            for r in runs
        ]

    # --- the boot loop ----------------------------------------------------------------

    def _program(self, script: PathLike, root: Optional[PathLike]) -> tuple[Path, str]:
        path = self._path(script)
        base = self._path(root) if root is not None else path.parent
        try:
            name = str(path.relative_to(base))
        except ValueError:
            raise ValueError(f"{path} is not inside the board's root {base}") from None
        if not path.is_file():
            raise FileNotFoundError(f"no such program: {path}")
        return base, name

    def _programs(self, root: Path, main: Optional[str]) -> dict[str, CodeType]:
        programs: dict[str, CodeType] = {}
        for name in filter(None, (main, "boot.py")):
            code = _PROGRAMS.get(root / name, name)
            if code is not None:
                programs[name] = code
        return programs

    def _plan(
        self,
        root: Path,
        main: Optional[str],
        repl: Optional[str],
        inject: Optional[Inject],
        hw: int,
        max_ms: Optional[int],
        programs: dict[str, CodeType],
    ) -> BootPlan:
        return BootPlan(
            root=root,
            main=main,
            repl=repl,
            resources=self.resources,
            inject=inject,
            hw_cause=hw,
            max_ms=max_ms,
            programs=programs,
            machine_stubs=self.machine_stubs,
        )

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
        resume: bool = False,
    ) -> SimRun:
        if max_boots < 1:
            raise ValueError("max_boots must be 1 or more")
        programs = self._programs(root, main)
        first_seq = _next_seq(self.region())
        deadline = time.monotonic() + timeout
        console = _Console(echo)
        reports: list[BootReport] = []
        hw = NO_RESET if resume else RC_POWER_ON
        self.on = False
        try:
            while True:
                boot_inject = inject if inject and inject.boot == len(reports) + 1 else None
                plan = self._plan(root, main, repl, boot_inject, hw, max_ms, programs)
                rep = self._boot(plan, console, deadline)
                reports.append(rep)
                if rep.end != "reset":
                    end, exit_code = rep.end, rep.code
                    break
                if len(reports) >= max_boots:
                    console.write(_cap_message(max_boots))
                    end, exit_code = "boot_limit", BOOT_LIMIT_EXIT
                    break
                hw = rep.hw_next or RC_UNKNOWN
        finally:
            console.close()
            # Every run's console, also of one that failed or timed out (the pytest
            # plugin attaches it to a failing test's report).
            self.consoles.append(console.text())
        self.on = end == "exit"
        return SimRun(console.text(), end, exit_code, self.region(), reports, first_seq)

    def _boot(self, plan: BootPlan, console: _Console, deadline: float) -> BootReport:
        status_r, status_w = os.pipe()
        try:
            pid = _fork_boot(plan, self.retained, console.write_fd, status_w)
            os.close(status_w)
            wstatus = console.wait(pid, deadline)
            data = _read_all(status_r)
        finally:
            os.close(status_r)
        if wstatus is None:
            text = console.text()
            raise SimTimeout(f"the board was still running after the timeout:\n{text}", text)
        rep = self._outcome(data, wstatus, self.retained)
        if rep is None:
            raise SimError(f"the simulator failed in a boot:\n{console.text()}")
        if rep.kind == "HARDFAULT" and not data:
            console.write(_posthoc_message())
        return rep

    def _boot_to_end(
        self, plan: BootPlan, retained: Path, console_fd: int, deadline: float
    ) -> BootReport:
        """One boot with its console on a file; its report (SimError if it failed)."""
        status_r, status_w = os.pipe()
        try:
            pid = _fork_boot(plan, retained, console_fd, status_w)
            os.close(status_w)
            wstatus = _wait(pid, deadline)
            data = _read_all(status_r)
        finally:
            os.close(status_r)
        if wstatus is None:
            raise SimTimeout("the board was still running after the timeout", "")
        rep = self._outcome(data, wstatus, retained)
        if rep is None:
            raise SimError("the simulator failed in a boot (see its console file)")
        return rep

    def _outcome(self, data: bytes, wstatus: int, retained: Path) -> Optional[BootReport]:
        """The report of a finished boot; a boot killed by a signal is a hard fault nobody
        recorded (recorded post hoc); None when the simulator itself failed."""
        if data:
            return _report(data)[0]
        if os.WIFSIGNALED(wstatus):
            sig = os.WTERMSIG(wstatus)
            _posthoc_hardfault(retained, sig)
            return BootReport("reset", None, "HARDFAULT", 0, 0, 0, 0)
        return None

    def _continue_all(
        self,
        runs: list[_Run],
        plan: BootPlan,
        max_boots: int,
        jobs: int,
        deadline: float,
        d: Path,
    ) -> None:
        """Boot every run on from its last report until it ends, ``jobs`` boots at once."""
        queue: deque[int] = deque()
        for i, r in enumerate(runs):
            self._settle(r, max_boots)
            if not r.end:
                queue.append(i)
        active: dict[int, tuple[int, int, int]] = {}  # pid -> (run index, status fd, out fd)
        try:
            while queue or active:
                while queue and len(active) < jobs:
                    i = queue.popleft()
                    out_path = d / f"reboot-{i}.out"
                    out_fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    status_r, status_w = os.pipe()
                    hw = runs[i].reports[-1].hw_next or RC_UNKNOWN
                    boot_plan = (
                        plan if hw == plan.hw_cause else dataclasses.replace(plan, hw_cause=hw)
                    )
                    pid = _fork_boot(boot_plan, runs[i].retained, out_fd, status_w)
                    os.close(status_w)
                    active[pid] = (i, status_r, out_fd)
                pid, wstatus = _wait_any(list(active), deadline)
                i, status_r, out_fd = active.pop(pid)
                data = _read_all(status_r)
                os.close(status_r)
                os.close(out_fd)
                r = runs[i]
                r.out += (d / f"reboot-{i}.out").read_bytes()
                rep = self._outcome(data, wstatus, r.retained)
                if rep is None:
                    raise SimError(f"the simulator failed in a boot:\n{r.out.decode()}")
                if rep.kind == "HARDFAULT" and not data:
                    r.out += _posthoc_message().encode()
                r.reports.append(rep)
                self._settle(r, max_boots)
                if not r.end:
                    queue.append(i)
        finally:
            for pid, (_i, status_r, out_fd) in active.items():
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                os.close(status_r)
                os.close(out_fd)

    @staticmethod
    def _settle(r: _Run, max_boots: int) -> None:
        """Decide whether a run has ended after its last boot."""
        rep = r.reports[-1]
        if rep.end != "reset":
            r.end, r.exit_code = rep.end, rep.code
        elif len(r.reports) >= max_boots:
            r.out += _cap_message(max_boots).encode()
            r.end, r.exit_code = "boot_limit", BOOT_LIMIT_EXIT


def _machine_stubs(stubs: Mapping[str, Any]) -> dict[str, Any]:
    """The user's ``machine`` names, checked: identifiers, not the simulator's own."""
    for name in stubs:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"machine_stubs: {name!r} is not a name")
        if name in MACHINE_OWN:
            raise ValueError(f"machine_stubs: machine.{name} is the simulator's own")
    return dict(stubs)


def _check_location(root: Path, loc: tuple[str, int, int]) -> None:
    """``oom_at=(file, line, n)`` must name a line of a file on the board that has an
    allocation point (else the injection could never happen)."""
    file, line, _n = loc
    path = root / file
    if not path.is_file():
        raise ValueError(f"oom_at: no file {file!r} on the board ({root})")
    code = compile(path.read_bytes(), file, "exec", dont_inherit=True)
    if not allocpoints.has_point_on_line(code, line):
        raise ValueError(f"oom_at: {file}:{line} has no allocation point")


def _region(path: Path) -> codec.Region:
    if not path.exists():
        return codec.decode_region(bytes(REGION_SIZE))
    return codec.decode_region(path.read_bytes())


def _next_seq(region: codec.Region) -> int:
    if region.header is not None:
        return region.header.next_seq
    return max((r.seq for r in region.records), default=0) + 1


def _cap_message(max_boots: int) -> str:
    return f"failstop: boot limit reached (max_boots={max_boots}), not resetting\r\n"


def _posthoc_message() -> str:
    return "failstop-sim: the boot died without its fault path: HARDFAULT recorded post hoc\r\n"


def _posthoc_hardfault(retained: Path, sig: int) -> None:
    """Record a boot that died without its fault path (POSTHOC, as the firmware records
    a watchdog bite whose early warning never ran). Not when it died inside the fault
    path (the reset cause was already left there, and the reboot counted)."""
    ret = Retained(retained)
    try:
        if not ret.load_header() or ret.hdr.pending_cause:
            return
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = "?"
        ret.write_posthoc(KIND["HARDFAULT"], f"signal {sig} ({name}), no record")
        ret.hdr.pending_cause = RC_FAULT
        ret.commit()
    finally:
        ret.close()


def _wait(pid: int, deadline: float) -> Optional[int]:
    """Wait for a boot's process; its wait status, or None (killed) at the deadline."""
    try:
        return _wait_any([pid], deadline)[1]
    except SimTimeout:
        return None


def _wait_any(pids: Sequence[int], deadline: float) -> tuple[int, int]:
    """Wait until one of ``pids`` ends: (pid, wait status). At the deadline they are
    killed and SimTimeout raised."""
    fds: dict[int, int] = {}
    sel = selectors.DefaultSelector()
    done = False
    try:
        for pid in pids:
            with contextlib.suppress(OSError, AttributeError):
                fd = os.pidfd_open(pid)
                fds[fd] = pid
                sel.register(fd, selectors.EVENT_READ)
        while True:
            for pid in pids:
                got, wstatus = os.waitpid(pid, os.WNOHANG)
                if got:
                    done = True
                    return pid, wstatus
            left = deadline - time.monotonic()
            if left <= 0:
                for pid in pids:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                        os.waitpid(pid, 0)
                raise SimTimeout("the board was still running after the timeout", "")
            sel.select(min(left, 0.05) if len(fds) < len(pids) else left)
    finally:
        if not done:  # the deadline, Ctrl-C, pytest-timeout, any error: no orphan boots
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
        sel.close()
        for fd in fds:
            os.close(fd)


class _Console:
    """The board's console for a run: a pipe every boot writes to, read while the boot
    runs (and echoed, if asked)."""

    def __init__(self, echo: Optional[TextIO]) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self.echo = echo
        self._buf = bytearray()

    def write(self, text: str) -> None:
        self._buf += text.encode()
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
        """Read the console until the boot's process ends: its wait status, or None
        (the process is killed) when the deadline passes first."""
        sel = selectors.DefaultSelector()
        sel.register(self.read_fd, selectors.EVENT_READ)
        pidfd = -1
        try:
            with contextlib.suppress(OSError, AttributeError):
                pidfd = os.pidfd_open(pid)
                sel.register(pidfd, selectors.EVENT_READ)
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
                sel.select(min(left, 0.05) if pidfd < 0 else left)
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
