# failstop board MPS2_AN385, first thing at every boot: mount the flash filesystem.
# "Flash" is the board's 16 MiB PSRAM at 0x21000000, which the emulator runner backs
# with a file on the host: it keeps its contents across resets and power cycles, as
# flash does, while SSRAM (the heap and the failstop record) starts zeroed at power-on.
import uctypes
import vfs
from micropython import const

_BASE = const(0x21000000)
_BLOCK = const(4096)
_BLOCKS = const(256)  # 1 MiB


class Flash:
    def __init__(self):
        self.mem = memoryview(uctypes.bytearray_at(_BASE, _BLOCK * _BLOCKS))

    def readblocks(self, n, buf, off=0):
        a = n * _BLOCK + off
        buf[:] = self.mem[a : a + len(buf)]

    def writeblocks(self, n, buf, off=0):
        a = n * _BLOCK + off
        self.mem[a : a + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return _BLOCKS
        if op == 5:  # block size
            return _BLOCK
        if op == 6:  # erase: nothing to do in RAM
            return 0
        return None


def _mount():
    bdev = Flash()
    try:
        fs = vfs.VfsLfs2(bdev)
    except OSError:
        print("flash: no filesystem, formatting (littlefs, 1 MiB)")
        vfs.VfsLfs2.mkfs(bdev)
        fs = vfs.VfsLfs2(bdev)
    vfs.mount(fs, "/")
    import os

    os.chdir("/")


_mount()
del _mount, Flash
