"""`failstop flash FIRMWARE.bin --port PORT [--chip ...]` for ESP32, ESP32-S3 and ESP32-C3.

THE BOOTLOADER HERE IS A MOCK. No ESP32 board is attached to this machine: the chip's ROM
serial bootloader is played by `esp32-mock-bootloader` (PyPI, pinned in
firmware/requirements-dev.txt), a SLIP protocol server that answers as the chip's ROM loader
would, keeps a 4 MiB flash image in memory across connections, accepts esptool's stub
upload without running it, and runs no firmware. esptool (>= 5) is the real one. What these
tests prove is therefore the host half only: that `failstop flash` picks the chip's offset
(0x1000 ESP32, 0x0 S3/C3) from the image, drives esptool's write + MD5 check + reset, fails
when what arrives in flash is not what was sent, and refuses images for another chip. That
a real chip boots the image is not tested here.

The firmware images are synthetic: an ESP image header naming the chip (esptool's
IMAGE_CHIP_ID in the extended header, as the bootloader at the start of MicroPython's
firmware.bin has it) followed by pseudo-random bytes.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import pytest

from failstop_host.flash import ESP_CHIPS, FlashError, check_esp_image

pytest.importorskip("esptool", reason="esptool is not installed (firmware/requirements-dev.txt)")

VENV_BIN = Path(sys.executable).parent
MOCK = shutil.which("esp32-mock-bootloader", path=str(VENV_BIN)) or shutil.which(
    "esp32-mock-bootloader"
)
FAILSTOP = [sys.executable, "-m", "failstop_host"]
ESPTOOL = [sys.executable, "-m", "esptool"]
IMAGE_SIZE = 96 * 1024

needs_mock = pytest.mark.skipif(
    MOCK is None and not os.environ.get("FAILSTOP_REQUIRE_ALL"),
    reason="esp32-mock-bootloader is not installed (firmware/requirements-dev.txt)",
)


def esp_image(chip: str, size: int = IMAGE_SIZE, seed: int = 1) -> bytes:
    """A synthetic image for `chip`: header (magic 0xE9, 1 segment, DIO, 4 MB/40 MHz,
    entry), extended header with the chip id, then pseudo-random bytes."""
    chip_id = ESP_CHIPS[chip].image_chip_id
    hdr = bytes([0xE9, 1, 2, 0x20]) + struct.pack("<I", 0x40080400)
    ext = bytes([0xEE, 0, 0, 0]) + struct.pack("<H", chip_id) + bytes(10)
    rnd = random.Random(seed)
    return hdr + ext + bytes(rnd.getrandbits(8) for _ in range(size - len(hdr) - len(ext)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mock:
    """One esp32-mock-bootloader server (foreground process) for one chip, over TCP
    (esptool: socket://127.0.0.1:N) or a pseudo-terminal (a serial device path, as a
    board's /dev/ttyUSB0 would be)."""

    def __init__(self, chip: str, tmp: Path, pty: bool = False) -> None:
        assert MOCK is not None, "esp32-mock-bootloader is not installed"
        self.chip = chip
        self.log = tmp / f"mock-{chip}.log"
        cmd = [MOCK, "run", "--chip", chip, "--timeout", "240"]
        if pty:
            port_file = tmp / f"mock-{chip}.port"
            cmd += ["--pty", "--port-file", str(port_file)]
        else:
            self.tcp = free_port()
            cmd += ["--port", str(self.tcp)]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "mock did not start: " + self.log.read_text()
            if pty:
                if port_file.exists() and port_file.read_text().strip():
                    self.url = port_file.read_text().strip()
                    break
            else:
                try:
                    socket.create_connection(("127.0.0.1", self.tcp), timeout=0.5).close()
                    self.url = f"socket://127.0.0.1:{self.tcp}"
                    break
                except OSError:
                    pass
            time.sleep(0.1)

    def read_flash(self, offset: int, size: int, tmp: Path) -> bytes:
        """Read the mock's flash back with esptool (ROM mode: READ_FLASH_SLOW; the mock's
        stub read answers only after a stub write in the same session, so ROM first)."""
        out = tmp / f"readback-{self.chip}-{offset:x}.bin"
        # Three rounds: on a loaded machine the mock can answer late after an aborted
        # session (esptool then reports "No more data to read" and exits nonzero).
        for stub in (["--no-stub"], [], ["--no-stub"], [], ["--no-stub"], []):
            time.sleep(0.2)
            out.unlink(missing_ok=True)
            cmd = [*ESPTOOL, "--chip", self.chip, "--port", self.url, *stub]
            cmd += ["--before", "no-reset", "--after", "no-reset"]
            cmd += ["read-flash", f"{offset:#x}", str(size), str(out)]
            p = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=120,
            )
            if p.returncode == 0 and out.exists():
                return out.read_bytes()
        raise AssertionError(f"read-flash failed: {p.stdout}{p.stderr}")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def mocks(tmp_path: Path) -> Iterator[list[Mock]]:
    started: list[Mock] = []
    yield started
    for m in started:
        m.close()


def failstop_flash(
    *args: str, env: Optional[dict[str, str]] = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FAILSTOP, "flash", *args], capture_output=True, text=True, timeout=180, env=env
    )


# --- written at the chip's offset, read back equal ------------------------------------


@needs_mock
@pytest.mark.parametrize(
    ("chip", "pty"),
    [("esp32", False), ("esp32s3", True), ("esp32c3", False)],
    ids=["esp32-socket", "esp32s3-pty", "esp32c3-socket"],
)
def test_flash_writes_at_the_chip_offset_and_reads_back_equal(
    chip: str, pty: bool, tmp_path: Path, mocks: list[Mock]
) -> None:
    """Against the MOCK bootloader: the image lands at 0x1000 (ESP32) or 0x0 (S3, C3), byte
    for byte, and nothing before it is touched; esptool's own MD5 check passed."""
    mock = Mock(chip, tmp_path, pty=pty)
    mocks.append(mock)
    image = esp_image(chip)
    fw = tmp_path / "firmware.bin"
    fw.write_bytes(image)
    p = failstop_flash(str(fw), "--port", mock.url, "--chip", chip)
    assert p.returncode == 0, p.stdout + p.stderr
    offset = ESP_CHIPS[chip].offset
    assert f"at {offset:#x}" in p.stdout
    assert "Hash of data verified" in p.stdout
    assert "written and verified" in p.stdout
    # Read back from 0x0: for the ESP32 the first 4 KiB stay erased (the ROM's own area
    # is not where MicroPython's bootloader goes).
    back = mock.read_flash(0, offset + len(image), tmp_path)
    assert back[:offset] == b"\xff" * offset
    assert back[offset:] == image


@needs_mock
def test_the_chip_comes_from_the_image_when_not_given(tmp_path: Path, mocks: list[Mock]) -> None:
    """Against the MOCK bootloader: no --chip; the S3 image header says esp32s3 -> 0x0;
    the port comes from $FAILSTOP_PORT."""
    mock = Mock("esp32s3", tmp_path)
    mocks.append(mock)
    image = esp_image("esp32s3", seed=7)
    fw = tmp_path / "s3.bin"
    fw.write_bytes(image)
    env = dict(os.environ, FAILSTOP_PORT=mock.url)
    p = failstop_flash(str(fw), env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "ESP32-S3" in p.stdout and "at 0x0" in p.stdout
    assert mock.read_flash(0, len(image), tmp_path) == image


# --- a corrupted transfer is detected ---------------------------------------------------

SLIP_END, SLIP_ESC, SLIP_ESC_END, SLIP_ESC_ESC = 0xC0, 0xDB, 0xDC, 0xDD
CMD_FLASH_DATA, CMD_FLASH_DEFL_DATA = 0x03, 0x11


def slip_decode(frame: bytes) -> bytes:
    return frame.replace(bytes([SLIP_ESC, SLIP_ESC_END]), bytes([SLIP_END])).replace(
        bytes([SLIP_ESC, SLIP_ESC_ESC]), bytes([SLIP_ESC])
    )


def slip_encode(packet: bytes) -> bytes:
    body = packet.replace(bytes([SLIP_ESC]), bytes([SLIP_ESC, SLIP_ESC_ESC])).replace(
        bytes([SLIP_END]), bytes([SLIP_ESC, SLIP_ESC_END])
    )
    return bytes([SLIP_END]) + body + bytes([SLIP_END])


def corrupt_data_packet(packet: bytes) -> Optional[bytes]:
    """A flash data command with one payload byte flipped and its checksum recomputed, so
    the bootloader accepts the packet and only the final MD5 comparison can notice.
    None if `packet` is no flash data command."""
    if len(packet) < 8 + 16 + 2 or packet[0] != 0x00:
        return None
    if packet[1] not in (CMD_FLASH_DATA, CMD_FLASH_DEFL_DATA):
        return None
    data = bytearray(packet[8:])
    payload_len = struct.unpack_from("<I", data, 0)[0]
    i = 16 + min(payload_len, len(data) - 16) // 2
    data[i] ^= 0x5A
    checksum = 0xEF
    for b in data[16:]:
        checksum ^= b
    return packet[:4] + struct.pack("<I", checksum) + bytes(data)


class CorruptingLink:
    """A TCP relay between esptool and the mock that flips one byte of the first flash data
    packet in flight (the checksum fixed up): the line noise a flaky USB cable makes."""

    def __init__(self, upstream_port: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self.listener.getsockname()[1]}"
        self.upstream_port = upstream_port
        self.corrupted = 0
        self.threads: list[threading.Thread] = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream_port))
            for target, args in ((self._up, (client, server)), (self._down, (server, client))):
                t = threading.Thread(target=target, args=args, daemon=True)
                t.start()
                self.threads.append(t)

    def _down(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            dst.close()

    def _up(self, src: socket.socket, dst: socket.socket) -> None:
        buf = bytearray()
        try:
            while chunk := src.recv(65536):
                buf += chunk
                # Forward whole frames (END ... END); keep a partial one for later.
                while True:
                    start = buf.find(SLIP_END)
                    if start < 0:
                        dst.sendall(bytes(buf))
                        buf.clear()
                        break
                    end = buf.find(SLIP_END, start + 1)
                    if end < 0:
                        dst.sendall(bytes(buf[:start]))
                        del buf[:start]
                        break
                    frame = bytes(buf[start : end + 1])
                    del buf[: end + 1]
                    if frame == bytes([SLIP_END, SLIP_END]):  # an empty frame
                        dst.sendall(frame[:1])
                        buf[0:0] = frame[1:]
                        continue
                    if self.corrupted == 0:
                        bad = corrupt_data_packet(slip_decode(frame[1:-1]))
                        if bad is not None:
                            self.corrupted += 1
                            frame = slip_encode(bad)
                    dst.sendall(frame)
        except OSError:
            pass
        finally:
            dst.close()

    def close(self) -> None:
        self.listener.close()


@needs_mock
@pytest.mark.parametrize("chip", ["esp32", "esp32s3", "esp32c3"])
def test_a_corrupted_transfer_is_detected(chip: str, tmp_path: Path, mocks: list[Mock]) -> None:
    """Against the MOCK bootloader, through a link that flips one byte of one data packet
    (checksum fixed, so the loader takes it): esptool's MD5 comparison after the write
    fails and `failstop flash` exits 3 (a board error) saying so; it never reports success."""
    mock = Mock(chip, tmp_path)
    mocks.append(mock)
    link = CorruptingLink(mock.tcp)
    try:
        image = esp_image(chip, seed=3)
        fw = tmp_path / "firmware.bin"
        fw.write_bytes(image)
        p = failstop_flash(str(fw), "--port", link.url, "--chip", chip)
    finally:
        link.close()
    assert link.corrupted == 1
    assert p.returncode == 3, p.stdout + p.stderr
    assert "does not match" in p.stderr or "MD5" in p.stderr, p.stdout + p.stderr
    assert "written and verified" not in p.stdout
    offset = ESP_CHIPS[chip].offset
    assert mock.read_flash(offset, len(image), tmp_path) != image


# --- refused before anything is written --------------------------------------------------


def test_an_image_for_another_chip_is_refused(tmp_path: Path) -> None:
    fw = tmp_path / "firmware.bin"
    fw.write_bytes(esp_image("esp32"))
    # Nothing listens on this port: the refusal comes before any connection.
    p = failstop_flash(str(fw), "--port", "socket://127.0.0.1:9", "--chip", "esp32s3")
    assert p.returncode == 3
    assert "built for the ESP32 (esp32), not --chip esp32s3" in p.stderr
    (tmp_path / "zeros.bin").write_bytes(b"\0" * 64)
    with pytest.raises(FlashError, match="not an ESP32 firmware image"):
        check_esp_image(tmp_path / "zeros.bin", None)
    unknown = bytearray(esp_image("esp32"))
    unknown[12:14] = (2).to_bytes(2, "little")  # ESP32-S2: not a failstop target
    (tmp_path / "s2.bin").write_bytes(unknown)
    with pytest.raises(FlashError, match="chip id 2"):
        check_esp_image(tmp_path / "s2.bin", None)


@pytest.mark.parametrize("chip", sorted(ESP_CHIPS))
def test_chip_offsets_match_micropython_and_esptool(chip: str) -> None:
    """The offsets are MicroPython's (ports/esp32/boards/deploy.md) and the installed
    esptool's own bootloader offsets and image chip ids."""
    from esptool.targets import CHIP_DEFS

    esptool_chip = CHIP_DEFS[chip]
    assert ESP_CHIPS[chip].offset == esptool_chip.BOOTLOADER_FLASH_OFFSET
    assert ESP_CHIPS[chip].image_chip_id == esptool_chip.IMAGE_CHIP_ID
    assert ESP_CHIPS[chip].offset == {"esp32": 0x1000, "esp32s3": 0, "esp32c3": 0}[chip]


def test_an_esp32_image_needs_a_port(tmp_path: Path) -> None:
    fw = tmp_path / "firmware.bin"
    fw.write_bytes(esp_image("esp32c3"))
    env = {k: v for k, v in os.environ.items() if k != "FAILSTOP_PORT"}
    p = failstop_flash(str(fw), env=env)
    assert p.returncode == 3 and "--port PORT" in p.stderr
    p = failstop_flash(str(fw), "--port", "socket://127.0.0.1:9", "--drive", str(tmp_path), env=env)
    assert p.returncode == 3 and "not an ESP32" in p.stderr
