"""`failstop flash` (behind `make flash BOARD=RPI_PICO`): a UF2 onto a Pico's RPI-RP2 drive.

End to end on the emulated Pico: a running board is sent into its bootloader with real
mpremote, its RPI-RP2 drive appears, the UF2 is copied onto it, and the board restarts
into the new firmware. The drive search over /proc/mounts is tested with directories that
stand in for mounted drives (no USB mass storage here): the mounts file and the drives are
fakes, the copying and checking are the real code."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import require_built
from emulated_backend import at_repl
from failstop_host.flash import INFO_UF2_NAME, FlashError, find_drives, flash
from failstop_host.pico import PicoBoard
from rp2_backend import PICO_FW, pico_board

FAILSTOP = [sys.executable, "-m", "failstop_host"]
INFO = "UF2 Bootloader v3.0\r\nModel: Raspberry Pi RP2\r\nBoard-ID: RPI-RP2\r\n"


def failstop(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FAILSTOP, *args], capture_output=True, text=True, timeout=60)


def patched_uf2(src: Path, dst: Path, old: bytes, new: bytes) -> None:
    """A copy of a UF2 firmware with `old` replaced by `new` inside one block's payload."""
    assert len(old) == len(new)
    data = bytearray(src.read_bytes())
    for off in range(0, len(data), 512):
        payload = data[off + 32 : off + 32 + 256]
        i = payload.find(old)
        if i >= 0:
            data[off + 32 + i : off + 32 + i + len(old)] = new
            dst.write_bytes(data)
            return
    raise AssertionError(f"{old!r} not inside one UF2 block of {src}")


@pytest.fixture
def pico(tmp_path: Path) -> Iterator[PicoBoard]:
    with at_repl(pico_board(tmp_path)) as b:
        yield b


def test_flash_through_the_bootloader_of_the_emulated_pico(pico: PicoBoard, tmp_path: Path) -> None:
    # A different firmware: the same build with its board name changed.
    new_fw = tmp_path / "renamed.uf2"
    patched_uf2(PICO_FW, new_fw, b"Raspberry Pi Pico with", b"Raspberry Pi Pic0 with")
    assert not pico.drive.exists()  # no drive while the firmware runs
    start = len(pico.output())
    p = failstop("flash", "--bootloader", "-p", pico.port, "--drive", str(pico.drive), str(new_fw))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "mpremote connect" in p.stderr and "bootloader" in p.stderr
    blocks = new_fw.stat().st_size // 512
    assert f"({blocks} blocks)" in p.stdout
    assert pico.wait_for(rb"Raspberry Pi Pic0 with RP2040", timeout=20, start=start), pico.output()
    assert pico.flashed() == [blocks]
    assert not pico.drive.exists()  # the drive went away with the restart
    # The new firmware is the one in flash now: it is still there after a power cycle.
    pico.power_cycle()
    assert pico.wait_for(rb"Raspberry Pi Pic0 with RP2040", timeout=20), pico.output()


def test_flash_without_a_drive_says_how_to_get_one(tmp_path: Path) -> None:
    require_built(PICO_FW, "make firmware BOARD=RPI_PICO")
    mounts = tmp_path / "mounts"
    mounts.write_text("proc /proc proc rw 0 0\n/dev/sda1 / ext4 rw 0 0\n")
    with pytest.raises(FlashError, match="BOOTSEL") as e:
        flash(PICO_FW, None, False, None, 1.0, sys.stdout, sys.stderr, mounts=mounts)
    assert "mpremote bootloader" in str(e.value) or "--bootloader" in str(e.value)
    p = failstop("flash", "--drive", str(tmp_path), str(PICO_FW))  # not a Pico drive
    assert p.returncode == 3 and "not an RPI-RP2 drive" in p.stderr


def test_flash_finds_the_mounted_drive(tmp_path: Path) -> None:
    require_built(PICO_FW, "make firmware BOARD=RPI_PICO")
    # Stand-ins for mounted drives: a USB stick, and the Pico's drive at a path with a
    # blank, which /proc/mounts writes as \040, and non-ASCII letters, which it does not.
    stick = tmp_path / "USBSTICK"
    drive = tmp_path / "RPI RP2 Küche"
    for d in (stick, drive):
        d.mkdir()
    (stick / INFO_UF2_NAME).write_text("UF2 Bootloader v1.0\r\nBoard-ID: SAMD21\r\n")
    (drive / INFO_UF2_NAME).write_text(INFO)
    mounts = tmp_path / "mounts"
    mounts.write_text(
        f"/dev/sdb1 {stick} vfat rw 0 0\n"
        f"/dev/sdc1 {str(drive).replace(' ', chr(92) + '040')} vfat rw 0 0\n"
    )
    assert find_drives(mounts) == [drive]
    out = tmp_path / "out.txt"
    with open(out, "w") as o:
        target = flash(PICO_FW, None, False, None, 1.0, o, sys.stderr, mounts=mounts)
    assert target == drive / "firmware.uf2"
    assert target.read_bytes() == PICO_FW.read_bytes()
    assert "blocks" in out.read_text()
    # Two Pico drives: which one is meant is not guessed.
    other = tmp_path / "other"
    other.mkdir()
    (other / INFO_UF2_NAME).write_text(INFO)
    with open(mounts, "a") as m:
        m.write(f"/dev/sdd1 {other} vfat rw 0 0\n")
    with pytest.raises(FlashError, match="more than one"):
        flash(PICO_FW, None, False, None, 1.0, sys.stdout, sys.stderr, mounts=mounts)


@pytest.mark.parametrize(
    "content, why",
    [
        (b"", "not a UF2 file"),
        (b"\x7fELF" + bytes(508), "no UF2 magic"),
        (b"x" * 100, "not a multiple of 512"),
    ],
)
def test_flash_rejects_what_is_not_a_uf2(tmp_path: Path, content: bytes, why: str) -> None:
    fw = tmp_path / "firmware.uf2"
    fw.write_bytes(content)
    drive = tmp_path / "drive"
    drive.mkdir()
    (drive / INFO_UF2_NAME).write_text(INFO)
    p = failstop("flash", "--drive", str(drive), str(fw))
    assert p.returncode == 3 and why in p.stderr, p.stderr
    assert not (drive / "firmware.uf2").exists()
