"""The ``failstop`` command: decode, log, watch, emulate, flash."""

from __future__ import annotations

import argparse
import binascii
import json
import string
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, TextIO

from . import __version__
from .codec import EMPTY, Record, Region, decode_region, format_record, format_region, region_json
from .device import DEFAULT_BAUD, DEFAULT_TIMEOUT, Board, DeviceError
from .textsafe import escape

EXIT_OK = 0  # records found (decode, log); watch stopped with Ctrl-C; flash done
EXIT_NONE = 1  # no records (decode, log)
EXIT_USAGE = 2  # usage error: unknown option, bad value (argparse's status)
EXIT_ERROR = 3  # board or input error: no board, no answer, port lost, garbage, bad file

_TEXT_BYTES = frozenset(string.printable.encode("ascii"))
_HEX = frozenset(string.hexdigits)


class InputError(Exception):
    """A region file that cannot be used."""


def region_bytes(data: bytes) -> bytes:
    """The region in ``data``: raw bytes as they are, or a hex dump (whitespace allowed,
    e.g. the output of ``binascii.hexlify(failstop.dump())`` or ``xxd -p``) decoded."""
    if not data:
        raise InputError("the file is empty")
    if all(b in _TEXT_BYTES for b in data):
        digits = "".join(data.decode("ascii").split())
        if digits and all(c in _HEX for c in digits) and len(digits) % 2 == 0:
            return binascii.unhexlify(digits)
        raise InputError("the file is text but not a hex dump of a failstop region")
    return data


def _report_problems(region: Region, err: TextIO, show_empty: bool) -> None:
    if region.header_error is not None:
        err.write(
            f"failstop: header invalid ({region.header_error}); slots read with the default "
            f"geometry ({region.nslots} x {region.slot_size} bytes)\n"
        )
    for bad in region.invalid:
        if bad.reason == EMPTY and not show_empty:
            continue
        note = "" if bad.reason == EMPTY else " - not a record (torn write or corruption)"
        err.write(f"failstop: slot {bad.slot}: {bad.reason}{note}\n")


class Symbols:
    """``--elf FIRMWARE.elf``: the record's code addresses as function (file:line)."""

    def __init__(self, path: str) -> None:
        from .symbols import Symbolizer

        self.symbolizer = Symbolizer(path)

    def text(self, address: int, is_return: bool) -> str:
        return escape(str(self.symbolizer.lookup(address, is_return)))

    def add_json(self, obj: dict[str, object], pc: int, lr: int) -> dict[str, object]:
        if pc or lr:
            obj["pc_symbol"] = self.symbolizer.lookup(pc).to_json()
            obj["lr_symbol"] = self.symbolizer.lookup(lr, True).to_json()
        return obj


def record_json(rec: Record, symbols: Optional[Symbols]) -> dict[str, object]:
    obj: dict[str, object] = rec.to_json()
    return symbols.add_json(obj, rec.pc, rec.lr) if symbols else obj


def _print_records(
    region: Region,
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO,
    symbols: Optional[Symbols] = None,
) -> int:
    _report_problems(region, err, show_empty=args.all)
    records = list(region.records) if args.all else region.records[-1:]
    if args.json:  # the region first, on a line of its own, then one record a line
        out.write(json.dumps({"region": region_json(region)}, ensure_ascii=True) + "\n")
    for i, rec in enumerate(records):
        if args.json:
            out.write(json.dumps(record_json(rec, symbols), ensure_ascii=True) + "\n")
        else:
            if i:
                out.write("\n")
            out.write(format_record(rec, symbols.text if symbols else None) + "\n")
    if not args.json:
        out.write(("\n" if records else "") + format_region(region) + "\n")
    out.flush()
    if not records:
        err.write("failstop: no fault records\n")
        return EXIT_NONE
    return EXIT_OK


def _symbols_or_error(
    args: argparse.Namespace, err: TextIO, command: str
) -> tuple[bool, Optional[Symbols]]:
    from .symbols import ElfError

    try:
        return True, Symbols(args.elf) if args.elf else None
    except ElfError as exc:
        err.write(f"failstop {command}: --elf: {exc}\n")
        return False, None


def cmd_decode(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    ok, symbols = _symbols_or_error(args, err, "decode")
    if not ok:
        return EXIT_ERROR
    try:
        with open(args.file, "rb") as f:
            data = f.read()
    except OSError as exc:
        err.write(f"failstop decode: cannot read {escape(args.file)}: {exc.strerror or exc}\n")
        return EXIT_ERROR
    try:
        region = decode_region(region_bytes(data))
    except (InputError, ValueError) as exc:
        err.write(f"failstop decode: {escape(args.file)}: {exc}\n")
        return EXIT_ERROR
    return _print_records(region, args, out, err, symbols)


def cmd_log(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    ok, symbols = _symbols_or_error(args, err, "log")
    if not ok:
        return EXIT_ERROR
    try:
        with Board(args.port, args.timeout, resume=not args.stay) as board:
            region = board.read_region()
            status = _print_records(region, args, out, err, symbols)
            if args.clear:
                board.clear()
                err.write(f"failstop log: records cleared on {escape(board.port)}\n")
        if board.interrupted and board.resumed:
            err.write(
                "failstop log: the running program was interrupted and restarted (soft reset)\n"
            )
        elif board.interrupted and args.stay:
            err.write(
                "failstop log: the running program was stopped; the board waits at its REPL "
                "(a watchdog it armed is no longer fed)\n"
            )
        elif board.interrupted:
            err.write("failstop log: the running program was stopped and could not be restarted\n")
        return status
    except DeviceError as exc:
        err.write(f"failstop log: {exc}\n")
        return EXIT_ERROR


def cmd_watch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .ports import PortError, first_usb_port, port_name
    from .watch import watch

    ok, symbols = _symbols_or_error(args, err, "watch")
    if not ok:
        return EXIT_ERROR
    if args.port_arg and args.port:
        err.write("failstop watch: give the port once (PORT or --port)\n")
        return EXIT_USAGE
    try:
        port = port_name(args.port_arg or args.port) or first_usb_port()
    except PortError as exc:
        err.write(f"failstop watch: {exc}\n")
        return EXIT_ERROR
    return watch(
        port,
        baud=args.baud,
        as_json=args.json,
        read=args.read,
        out=out,
        err=err,
        timeout=args.timeout,
        reconnect=args.reconnect,
        symbolize=symbols.text if symbols else None,
        symbolize_json=symbols.add_json if symbols else None,
    )


BOARDS = ("MPS2_AN385", "RPI_PICO")

EMULATE_NEEDS = """\
  The emulators are not Python packages; get them once:
  - MPS2_AN385: QEMU's qemu-system-arm (Debian/Ubuntu: apt-get install qemu-system-arm;
    Fedora: dnf install qemu-system-arm; macOS: brew install qemu).
  - RPI_PICO: Node.js (apt-get install nodejs), rp2040js from npm (npm install rp2040js;
    set FAILSTOP_RP2040JS to its dist/esm/index.js) and the RP2040 B1 bootrom in
    $FAILSTOP_CACHE/rp2/bootrom-b1.bin (default ~/.cache/failstop). In the failstop source
    tree, `make deps-rp2` sets all of this up.
"""


def cmd_emulate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import signal
    import threading

    from .emulator import ConsoleBoard, EmulatorError, QemuBoard
    from .pico import PicoBoard

    name = args.board or ("RPI_PICO" if Path(args.firmware).suffix == ".uf2" else "MPS2_AN385")
    flash = args.flash or f"{name}-flash.img"
    board: ConsoleBoard
    try:
        if name == "RPI_PICO":
            board = PicoBoard(args.firmware, flash=Path(flash), echo=sys.stdout.buffer)
            what, console = "rp2040js", "USB serial"
        else:
            board = QemuBoard(args.firmware, flash=Path(flash), echo=sys.stdout.buffer)
            what, console = f"QEMU {QemuBoard.machine}", "UART"
        board.start()
    except EmulatorError as exc:
        err.write(f"failstop emulate: {exc}\n")
        if "not found" in str(exc) and "firmware not found" not in str(exc):
            err.write(EMULATE_NEEDS)
        return EXIT_ERROR
    err.write(
        f"failstop emulate: board {name} ({what}) is on.\n"
        f"  {console}:  {board.port}"
        f"   (mpremote connect {board.port} / failstop log -p {board.port})\n"
        f"  flash: {board.flash}   (kept across resets and runs)\n"
        + (
            f"  bootloader drive: {board.drive}   (there after machine.bootloader():"
            f" failstop flash --drive {board.drive} FIRMWARE.uf2)\n"
            if isinstance(board, PicoBoard)
            else ""
        )
        + "  Ctrl-C powers it off.\n"
    )
    err.flush()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while board.running and not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        board.close()
    err.write("\nfailstop emulate: powered off\n")
    return EXIT_OK


def cmd_flash(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import os

    from .flash import FlashError, flash, flash_esp, is_esp_image
    from .ports import ENV

    firmware = Path(args.firmware)
    try:
        if args.chip or is_esp_image(firmware):
            # ESP32/S3/C3: a MicroPython firmware.bin, written through esptool.
            port = args.port or os.environ.get(ENV)
            if not port:
                raise FlashError(
                    "an ESP32 board is flashed over its serial port: give --port PORT "
                    "(or set FAILSTOP_PORT), e.g. --port /dev/ttyUSB0"
                )
            if args.drive or args.bootloader:
                raise FlashError("--drive and --bootloader are for a Pico's UF2, not an ESP32")
            flash_esp(firmware, port, args.chip, args.baud, out, err)
            return EXIT_OK
        flash(
            firmware,
            Path(args.drive) if args.drive else None,
            args.bootloader,
            args.port or os.environ.get(ENV) or None,
            args.wait,
            out,
            err,
        )
    except FlashError as exc:
        err.write(f"failstop flash: {exc}\n")
        return EXIT_ERROR
    return EXIT_OK


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


ELF_HELP = (
    "the firmware's ELF file: print a record's pc and lr as function (file.c:line), from "
    "its symbols and DWARF line table (pyelftools; no toolchain needed)"
)

PORT_HELP = (
    "serial port, as mpremote names it: auto (the first USB serial device), a0 "
    "(/dev/ttyACM0), u0 (/dev/ttyUSB0), c0 (COM0), id:SERIAL, port:PATH, or a path "
    "(default: $FAILSTOP_PORT, else auto)"
)

EPILOG = """exit status: 0 done (records found), 1 no records, 2 usage error,
3 board or input error (no board, no answer, port lost, unreadable file)"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="failstop",
        description="Read and decode failstop fault records.",
        epilog=EPILOG,
    )
    p.add_argument("--version", action="version", version=f"failstop {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    d = sub.add_parser("decode", help="decode a region file (raw bytes or a hex dump)")
    d.add_argument("file", metavar="FILE")
    d.add_argument("--json", action="store_true", help="one JSON object per record and line")
    d.add_argument("--all", action="store_true", help="every record, oldest first")
    d.add_argument("--elf", metavar="FIRMWARE.elf", help=ELF_HELP)
    d.set_defaults(func=cmd_decode)

    lg = sub.add_parser("log", help="read the records from a board (mpremote transport)")
    lg.add_argument("--port", "-p", help=PORT_HELP)
    lg.add_argument("--json", action="store_true", help="one JSON object per record and line")
    lg.add_argument("--all", action="store_true", help="every record, oldest first")
    lg.add_argument("--elf", metavar="FIRMWARE.elf", help=ELF_HELP)
    lg.add_argument("--clear", action="store_true", help="erase the records after a good read")
    lg.add_argument(
        "--stay",
        action="store_true",
        help="leave a program the read interrupted stopped, the board at its REPL "
        "(default: restart it with a soft reset)",
    )
    lg.add_argument(
        "--timeout",
        type=_positive,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"give up on a silent or confused board after S seconds (default {DEFAULT_TIMEOUT:g})",
    )
    lg.set_defaults(func=cmd_log)

    w = sub.add_parser("watch", help="serial monitor that recognises faults and reboots")
    w.add_argument("port_arg", metavar="PORT", nargs="?", help="the same as --port")
    w.add_argument("--port", "-p", help=PORT_HELP)
    w.add_argument("--baud", type=int, default=DEFAULT_BAUD)
    w.add_argument("--json", action="store_true", help="print events as JSON lines only")
    w.add_argument(
        "--read", action="store_true", help="after a fault reboot, read and print the record"
    )
    w.add_argument("--timeout", type=_positive, default=DEFAULT_TIMEOUT, metavar="S")
    w.add_argument("--elf", metavar="FIRMWARE.elf", help=ELF_HELP + " (with --read)")
    w.add_argument(
        "--reconnect",
        type=float,
        default=10.0,
        metavar="S",
        help="a port that goes away (a USB board resets) is reopened when it is back within "
        "S seconds (default %(default)s; 0: stop watching)",
    )
    w.set_defaults(func=cmd_watch)

    e = sub.add_parser(
        "emulate",
        help="run a board's firmware in an emulator, its console on a pseudo-terminal",
    )
    e.add_argument(
        "firmware",
        metavar="FIRMWARE",
        help="firmware.elf (MPS2_AN385, in QEMU) or firmware.uf2 (RPI_PICO, in rp2040js)",
    )
    e.add_argument("--board", choices=BOARDS, help="default: from the firmware file")
    e.add_argument(
        "--flash",
        metavar="FILE",
        help="the board's flash (created erased if missing; default BOARD-flash.img)",
    )
    e.set_defaults(func=cmd_emulate)

    f = sub.add_parser(
        "flash",
        help="put a firmware on a board: a UF2 onto a Pico's RPI-RP2 drive, or an ESP32/S3/C3 "
        "firmware.bin through esptool",
    )
    f.add_argument(
        "firmware",
        metavar="FIRMWARE",
        help="firmware.uf2 (RPI_PICO build) or firmware.bin (ESP32_GENERIC, _S3, _C3 build)",
    )
    f.add_argument("--drive", metavar="DIR", help="the mounted RPI-RP2 drive (default: find it)")
    f.add_argument(
        "--bootloader",
        action="store_true",
        help="no drive yet: restart a running MicroPython board into its bootloader first",
    )
    f.add_argument(
        "--port",
        "-p",
        help="the board's serial port: for --bootloader, and for an ESP32 (default: "
        "$FAILSTOP_PORT); esptool also takes socket://HOST:PORT and rfc2217:// URLs",
    )
    f.add_argument(
        "--chip",
        choices=("esp32", "esp32s3", "esp32c3"),
        help="ESP32 target: the image must be built for it (default: from the image header); "
        "written at 0x1000 (esp32) or 0x0 (esp32s3, esp32c3)",
    )
    f.add_argument(
        "--baud",
        type=int,
        default=460800,
        help="ESP32: esptool's baud rate (default %(default)s)",
    )
    f.add_argument(
        "--wait",
        type=_positive,
        default=15.0,
        metavar="S",
        help="how long to wait for the drive after --bootloader (default %(default)s)",
    )
    f.set_defaults(func=cmd_flash)
    return p


def main(
    argv: Optional[Sequence[str]] = None,
    out: Optional[TextIO] = None,
    err: Optional[TextIO] = None,
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args, out, err))
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        err.write("failstop: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
