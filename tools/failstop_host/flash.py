"""``failstop flash``: put a UF2 firmware on a Raspberry Pi Pico.

A Pico in its bootloader (BOOTSEL held while plugging it in, or ``mpremote bootloader``
on a running MicroPython) shows up as a USB drive labelled RPI-RP2 whose INFO_UF2.TXT
names the board; a UF2 file copied onto it is written to flash, and the Pico restarts
into it. This finds that drive among the mounted file systems (or takes ``--drive``),
can ask a running board to enter the bootloader first (``--bootloader``), and otherwise
says how to get the drive.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, TextIO

UF2_MAGIC = (0x0A324655, 0x9E5D5157)
BOARD_ID = "RPI-RP2"  # RP2040's bootrom; INFO_UF2.TXT: "Board-ID: RPI-RP2"
LABEL_PATH = Path("/dev/disk/by-label") / BOARD_ID
INFO_UF2_NAME = "INFO_UF2.TXT"

HOW = f"""\
No {BOARD_ID} drive is mounted. To get one:
  - unplug the Pico, hold its BOOTSEL button, plug it in, release the button; or
  - if it runs MicroPython: failstop flash --bootloader FIRMWARE.uf2
    (make flash BOARD=RPI_PICO BOOTLOADER=1), which runs `mpremote bootloader` first
Desktops mount the drive by themselves; elsewhere:
  sudo mount {LABEL_PATH} /mnt && failstop flash --drive /mnt FIRMWARE.uf2
"""


class FlashError(Exception):
    """The firmware could not be put on the board."""


def check_uf2(path: Path) -> int:
    """The number of 512-byte UF2 blocks in ``path``; FlashError if it is not a UF2 file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FlashError(f"{path}: {exc.strerror or exc}") from None
    if not data:
        raise FlashError(f"{path}: not a UF2 file (empty)")
    if len(data) % 512:
        raise FlashError(f"{path}: not a UF2 file (size {len(data)} is not a multiple of 512)")
    for off in range(0, len(data), 512):
        magic = (
            int.from_bytes(data[off : off + 4], "little"),
            int.from_bytes(data[off + 4 : off + 8], "little"),
        )
        if magic != UF2_MAGIC:
            raise FlashError(f"{path}: not a UF2 file (block {off // 512} has no UF2 magic)")
    return len(data) // 512


def is_pico_drive(path: Path) -> bool:
    try:
        info = (path / INFO_UF2_NAME).read_text(errors="replace")
    except OSError:
        return False
    return f"Board-ID: {BOARD_ID}" in info


def find_drives(mounts: Path = Path("/proc/mounts")) -> list[Path]:
    """Mounted RPI-RP2 drives, wherever the system mounted them."""
    found: list[Path] = []
    try:
        lines = mounts.read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        if len(fields) < 2:
            continue
        # /proc/mounts writes blank, tab, newline and backslash in paths as octal (\040).
        point = Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1]))
        if point not in found and is_pico_drive(point):
            found.append(point)
    return found


def enter_bootloader(port: Optional[str], err: TextIO) -> None:
    """Ask MicroPython on ``port`` (default: the first board mpremote finds) to restart
    into the USB bootloader."""
    cmd = [sys.executable, "-m", "mpremote"]
    if port:
        cmd += ["connect", port]
    cmd.append("bootloader")
    err.write(f"failstop flash: {' '.join(cmd[2:])}\n")
    # A board that left the port mid-command has done what was asked.
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)


def flash(
    firmware: Path,
    drive: Optional[Path],
    bootloader: bool,
    port: Optional[str],
    wait: float,
    out: TextIO,
    err: TextIO,
    mounts: Path = Path("/proc/mounts"),
) -> Path:
    """Copy ``firmware`` onto the Pico's drive; returns the file written."""
    blocks = check_uf2(firmware)

    def look() -> list[Path]:
        if drive is not None:
            return [drive] if is_pico_drive(drive) else []
        return find_drives(mounts)

    drives = look()
    if not drives and bootloader:
        enter_bootloader(port, err)
        deadline = time.monotonic() + wait
        while not drives and time.monotonic() < deadline:
            time.sleep(0.25)
            drives = look()
    if not drives and drive is not None:
        raise FlashError(f"{drive}: not an {BOARD_ID} drive (no INFO_UF2.TXT naming it)")
    if not drives:
        hint = HOW
        if LABEL_PATH.exists():
            hint = f"The Pico's bootloader drive is there ({LABEL_PATH}) but not mounted.\n" + HOW
        raise FlashError(hint.rstrip())
    if len(drives) > 1:
        listed = ", ".join(str(d) for d in drives)
        raise FlashError(f"more than one {BOARD_ID} drive ({listed}): pick one with --drive")
    target = drives[0] / firmware.name
    out.write(f"failstop flash: {firmware} ({blocks} blocks) -> {target}\n")
    try:
        shutil.copyfile(firmware, target)
        os.sync()  # the Pico restarts once it has the last block: let it arrive
    except OSError as exc:
        raise FlashError(f"copy to {target} failed: {exc.strerror or exc}") from None
    out.write("failstop flash: done; the Pico restarts into the new firmware\n")
    return target
