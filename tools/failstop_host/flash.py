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


# --- ESP32, ESP32-S3, ESP32-C3: through esptool ------------------------------------
#
# MicroPython's esp32 port builds firmware.bin as one image that starts with the second
# stage bootloader, so it is written at the chip's bootloader offset (MicroPython's
# ports/esp32/boards/deploy.md; esptool's BOOTLOADER_FLASH_OFFSET): 0x1000 on the ESP32,
# 0x0 on the S3 and C3. The bootloader's image header names the chip it was built for
# (the extended header's chip_id, esptool's IMAGE_CHIP_ID), so a wrong --chip, or an
# image for another chip, is refused before anything is written.

ESP_IMAGE_MAGIC = 0xE9


class EspChip:
    """What ``failstop flash`` needs to know of a chip."""

    def __init__(self, name: str, image_chip_id: int, offset: int, label: str) -> None:
        self.name = name
        self.image_chip_id = image_chip_id
        self.offset = offset
        self.label = label


ESP_CHIPS = {
    c.name: c
    for c in (
        EspChip("esp32", 0, 0x1000, "ESP32"),
        EspChip("esp32s3", 9, 0x0, "ESP32-S3"),
        EspChip("esp32c3", 5, 0x0, "ESP32-C3"),
    )
}
ESP_BAUD = 460800  # MicroPython's deploy.md
ESPTOOL_MIN = (5, 0)


def is_esp_image(path: Path) -> bool:
    """True if ``path`` starts like an ESP firmware image (magic byte 0xE9)."""
    try:
        with open(path, "rb") as f:
            head = f.read(1)
    except OSError:
        return False
    return head == bytes([ESP_IMAGE_MAGIC])


def check_esp_image(path: Path, chip: Optional[str]) -> tuple[EspChip, int]:
    """The chip a MicroPython firmware.bin is for, and its size; FlashError if it is not
    an ESP image, is for a chip failstop does not flash, or is not for ``chip``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FlashError(f"{path}: {exc.strerror or exc}") from None
    if len(data) < 24 or data[0] != ESP_IMAGE_MAGIC:
        raise FlashError(
            f"{path}: not an ESP32 firmware image (no 0xE9 image header); "
            "use the firmware.bin of MicroPython's esp32 build"
        )
    chip_id = int.from_bytes(data[12:14], "little")
    found = next((c for c in ESP_CHIPS.values() if c.image_chip_id == chip_id), None)
    if found is None:
        raise FlashError(
            f"{path}: an image for chip id {chip_id}, not one of "
            + ", ".join(f"{c.name} ({c.image_chip_id})" for c in ESP_CHIPS.values())
        )
    if chip is not None and chip != found.name:
        raise FlashError(
            f"{path} is built for the {found.label} ({found.name}), not --chip {chip}: "
            "written at the wrong offset it would not boot"
        )
    return found, len(data)


def esptool_version() -> tuple[int, ...]:
    """The installed esptool's version; FlashError when it is missing or older than 5."""
    from importlib import metadata

    try:
        text = metadata.version("esptool")
    except metadata.PackageNotFoundError:
        raise FlashError(
            "esptool is not installed (pip install 'esptool>=5'; "
            "make deps installs it into the venv)"
        ) from None
    version = tuple(int(p) for p in re.findall(r"\d+", text)[:3])
    if version < ESPTOOL_MIN:
        raise FlashError(
            f"esptool {text} is too old: failstop flash needs esptool 5 or later "
            "(pip install 'esptool>=5')"
        )
    return version


def esptool_write_command(chip: EspChip, port: str, baud: int, firmware: Path) -> list[str]:
    """The esptool (>= 5) command line that writes, verifies and resets."""
    return [
        sys.executable,
        "-m",
        "esptool",
        "--chip",
        chip.name,
        "--port",
        port,
        "--baud",
        str(baud),
        "--before",
        "default-reset",
        "--after",
        "hard-reset",
        "write-flash",
        f"{chip.offset:#x}",
        str(firmware),
    ]


def flash_esp(
    firmware: Path,
    port: str,
    chip: Optional[str],
    baud: int,
    out: TextIO,
    err: TextIO,
) -> EspChip:
    """Write a MicroPython firmware.bin to an ESP32/S3/C3 through esptool at the chip's
    offset. esptool compares the MD5 of the flash with the image's after writing (a
    corrupted transfer fails here) and resets the board into the new firmware."""
    target, size = check_esp_image(firmware, chip)
    esptool_version()
    cmd = esptool_write_command(target, port, baud, firmware)
    out.write(
        f"failstop flash: {firmware} ({size} bytes, {target.label}) -> {port} "
        f"at {target.offset:#x}\n"
    )
    out.write(f"failstop flash: esptool {' '.join(cmd[3:])}\n")
    out.flush()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    tail: list[str] = []
    verified = False
    for line in proc.stdout:
        out.write(line)
        tail = [*tail[-19:], line.rstrip()]
        verified = verified or "Hash of data verified" in line
    out.flush()
    code = proc.wait()
    if code != 0:
        errors = [t for t in tail if "error" in t.lower() or "does not match" in t.lower()]
        why = errors[-1] if errors else (tail[-1] if tail else f"exit status {code}")
        raise FlashError(f"esptool failed on {port}: {why.strip()}")
    if not verified:
        raise FlashError(f"esptool did not verify what it wrote on {port}")
    out.write("failstop flash: written and verified; the board restarts into the new firmware\n")
    return target
