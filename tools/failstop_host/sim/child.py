"""The boot sequence of the simulated board, in the forked process of one boot:
retained region and banner, device modules, ``boot.py``, then the main program (not in
safe mode), or the code typed at the REPL."""

from __future__ import annotations

import faulthandler
import gc
import io
import os
import resource
import sys
import tracemalloc
from pathlib import Path

from . import api, loader
from .config import BootPlan
from .retained import NO_RESET, RC_POWER_ON, Retained
from .runtime import Runtime

_AS_MARGIN = 256 * 1024 * 1024


def _console(fd: int) -> io.TextIOWrapper:
    """One unbuffered text stream for stdout and stderr: output stays in order."""
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    raw = io.FileIO(1, "w", closefd=False)
    return io.TextIOWrapper(raw, encoding="utf-8", errors="backslashreplace", write_through=True)


def _limit_address_space(heap: int) -> None:
    """Backstop for allocations far beyond the heap that the simulator cannot see
    before CPython makes them (``[0] * 10**9``): they fail at once with MemoryError."""
    try:
        with open("/proc/self/statm") as f:
            vm = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        want = vm + 2 * heap + _AS_MARGIN
        if hard == resource.RLIM_INFINITY or want <= hard:
            resource.setrlimit(resource.RLIMIT_AS, (want, hard))
    except (OSError, ValueError):
        pass


def boot(plan: BootPlan, retained_path: Path, console_fd: int, status_fd: int) -> None:
    """Run one boot; never returns (the boot ends with Runtime.finish)."""
    faulthandler.disable()  # a crash of the board is not the host's: recorded post hoc
    out = _console(console_fd)
    sys.stdout = sys.stderr = out
    os.chdir(plan.root)
    retained = Retained(retained_path)
    rt = Runtime(plan, retained, status_fd)
    rt.out = out
    if plan.hw_cause != NO_RESET or not retained.load_header():
        # A reset (a board that was on just goes on: the header is as it left it).
        retained.boot(RC_POWER_ON if plan.hw_cause == NO_RESET else plan.hw_cause, rt.write)
    api.install(rt)
    builtins_dict = loader.install(rt, plan.root)
    _limit_address_space(rt.heap.size or _AS_MARGIN * 4)
    if rt.heap.size is not None:
        if not tracemalloc.is_tracing():
            tracemalloc.start(1)
        gc.disable()  # collection happens when the heap is full (Heap.collect)
        gc.freeze()  # what the boot inherited is not the program's: collections skip it
        rt.heap.base = rt.heap.last = tracemalloc.get_traced_memory()[0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), rt.tracer.stack_limit + 200))
    rt.clock.retrip()
    rt.tracer.start()

    boot_code = rt.code_for("boot.py")
    if boot_code is not None:
        exc = rt.exec_program(boot_code, builtins_dict)
        if exc is not None and not isinstance(exc, SystemExit):
            rt.print_exception(exc, rt.write)  # boot.py is not the main program
    if plan.repl is not None:
        code = compile(plan.repl, "<stdin>", "exec", dont_inherit=True)
        rt.device_files.add("<stdin>")
        exc = rt.exec_program(code, builtins_dict)
        if exc is not None:
            rt.unhandled(exc)
        rt.end_program(0)
    if plan.main is None or retained.hdr.safe_mode:
        rt.end_program(0)
    code_main = rt.code_for(plan.main)
    if code_main is None:
        rt.write(f"failstop-sim: no main program {plan.main!r} in {plan.root}\n")
        rt.end_program(1)
    rt.main_active = True
    exc = rt.exec_program(code_main, builtins_dict)
    if exc is not None:
        rt.unhandled(exc)
    rt.end_program(0)
