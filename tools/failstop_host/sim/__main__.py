"""``python -m failstop_host.sim``: run a device script on the simulated board.

python -m failstop_host.sim main.py                 # run until it ends, show records
python -m failstop_host.sim main.py --oom-at 12     # the 12th allocation point fails
python -m failstop_host.sim main.py --oom-at main.py:10  # the first one on line 10 fails
python -m failstop_host.sim main.py --measure       # count instructions, allocation points
python -m failstop_host.sim main.py --sweep-oom     # OOM at every allocation point
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from ..codec import format_record
from .config import MIB, Inject, OomAt, Resources, parse_oom_at
from .host import SimDevice, SimTimeout

EXIT_OK, EXIT_FAULTS, EXIT_ERROR = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m failstop_host.sim",
        description="Run a MicroPython device script on failstop's simulated board.",
    )
    p.add_argument("script", type=Path, help="the main program (its folder is the board's root)")
    p.add_argument("--root", type=Path, help="the board's filesystem (default: script's folder)")
    p.add_argument("--retained", type=Path, help="retained RAM file (default: a fresh one)")
    p.add_argument("--heap", type=int, default=2 * MIB, help="heap bytes (0: no limit)")
    p.add_argument("--stack", type=int, default=100, help="Python frames that fit on the stack")
    p.add_argument("--op-ns", type=int, default=1000, help="virtual ns per bytecode instruction")
    p.add_argument(
        "--uptime-start-ms", type=int, default=0, help="uptime every boot starts at (ms)"
    )
    p.add_argument(
        "--missing-module",
        action="append",
        default=[],
        metavar="NAME",
        help="a module the firmware is built without (repeatable)",
    )
    p.add_argument("--max-boots", type=int, default=12, help="boot cap of the run")
    p.add_argument("--max-ms", type=int, help="virtual ms a boot may run")
    p.add_argument("--timeout", type=float, default=60.0, help="wall-clock seconds for the run")
    p.add_argument(
        "--oom-at",
        type=_oom_at,
        metavar="K|FILE:LINE[:N]",
        help="the k-th allocation point of boot 1 fails, or the first (n-th) one reached "
        "on that line of that file",
    )
    p.add_argument("--stack-at", type=int, help="a call at depth d in boot 1 is a stack fault")
    p.add_argument("--hang-at", type=int, help="boot 1 hangs at its n-th instruction")
    p.add_argument(
        "--no-early-warning",
        action="store_true",
        help="boot 1's watchdog resets with no early warning (recorded post hoc)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--measure", action="store_true", help="count, with nothing injected")
    mode.add_argument(
        "--sweep-oom", action="store_true", help="one run per allocation point, OOM injected there"
    )
    return p


def _oom_at(text: str) -> OomAt:
    try:
        return parse_oom_at(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    res = Resources(
        heap_size=args.heap or None,
        stack_limit=args.stack,
        op_ns=args.op_ns,
        uptime_start_ms=args.uptime_start_ms,
        missing_modules=tuple(args.missing_module),
    )
    with tempfile.TemporaryDirectory(prefix="failstop-sim-") as tmp:
        dev = SimDevice(tmp, res, retained=args.retained)
        try:
            if args.measure:
                rep = dev.measure(args.script, root=args.root, max_ms=args.max_ms)
                print(
                    f"boot 1: {rep.end}, {rep.steps} instructions, {rep.allocs} allocation "
                    f"points, deepest stack {rep.max_depth} frame(s), "
                    f"{rep.uptime_ms} ms virtual time"
                )
                return EXIT_OK
            if args.sweep_oom:
                return _sweep(dev, args)
            inject = Inject(
                oom_at=args.oom_at,
                stack_at=args.stack_at,
                hang_at=args.hang_at,
                early_warning=not args.no_early_warning,
            )
            run = dev.run(
                args.script,
                root=args.root,
                max_boots=args.max_boots,
                timeout=args.timeout,
                inject=None if inject.empty else inject,
                max_ms=args.max_ms,
                echo=sys.stdout,
            )
        except SimTimeout as e:
            print(f"failstop-sim: {e.args[0].splitlines()[0]}", file=sys.stderr)
            return EXIT_ERROR
        except (OSError, ValueError) as e:
            print(f"failstop-sim: {e}", file=sys.stderr)
            return EXIT_ERROR
        code = "" if run.exit_code is None else f", exit status {run.exit_code}"
        print(f"--- {run.boots} boot(s), ended: {run.end}{code}")
        for rec in run.new_records:
            print(format_record(rec))
        return EXIT_FAULTS if run.new_records else EXIT_OK


def _sweep(dev: SimDevice, args: argparse.Namespace) -> int:
    runs = dev.sweep_oom(args.script, root=args.root, max_ms=args.max_ms, timeout=args.timeout)
    bad = 0
    for k, run in enumerate(runs, 1):
        rec = run.record
        if rec is None:
            verdict = f"no record; {run.end}"
        else:
            loc = rec.location
            where = f"{loc.file}:{loc.line} in {loc.function}" if loc else "no Python frame"
            verdict = f"{rec.kind} seq {rec.seq} at {where}; then {run.end}"
        if rec is None or rec.kind != "OOM" or run.end != "exit":
            bad += 1
            verdict += "  <-- not an OOM record and a clean reboot"
        print(f"oom_at={k}: {verdict}")
    print(f"--- {len(runs)} allocation points, {bad} runs not an OOM record and a clean reboot")
    return EXIT_FAULTS if bad else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
