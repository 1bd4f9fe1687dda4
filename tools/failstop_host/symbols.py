"""Code addresses of a record (``pc``, ``lr``) as ``function (file.c:line)``.

From the firmware's ELF file alone, with pyelftools (pure Python): the function from the
symbol table, the file and line from the DWARF line table. No toolchain, any architecture
(Cortex-M Thumb addresses have bit 0 set; Xtensa and RISC-V do not). ``lr`` is a return
address: it is looked up one byte back, inside the call, as debuggers do for caller frames.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass
from typing import Any, Optional


class ElfError(Exception):
    """The file is not a usable ELF (missing, not ELF, no symbols)."""


@dataclass(frozen=True)
class Symbol:
    address: int
    function: Optional[str]
    file: Optional[str]
    line: Optional[int]

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = f"{self.file}:{self.line}" if self.line else self.file
        if self.function and where:
            return f"{self.function} ({where})"
        return self.function or (f"({where})" if where else "?")

    def to_json(self) -> dict[str, Any]:
        return {"function": self.function, "file": self.file, "line": self.line}


class Symbolizer:
    """Looks addresses up in one ELF file (read once)."""

    def __init__(self, path: str) -> None:
        try:
            from elftools.common.exceptions import ELFError
            from elftools.elf.elffile import ELFFile
            from elftools.elf.sections import SymbolTableSection
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise ElfError("--elf needs pyelftools (pip install pyelftools)") from exc
        self.path = path
        self._thumb = False
        funcs: list[tuple[int, int, str]] = []
        rows: list[tuple[int, str, int]] = []  # (address, file, line), row starts
        ends: list[int] = []  # addresses where a line sequence ends
        try:
            with open(path, "rb") as f:
                elf = ELFFile(f)
                self._thumb = elf["e_machine"] == "EM_ARM"
                for sec in elf.iter_sections():
                    if not isinstance(sec, SymbolTableSection):
                        continue
                    for sym in sec.iter_symbols():
                        if sym["st_info"]["type"] != "STT_FUNC" or not sym.name:
                            continue
                        addr = sym["st_value"] & ~1 if self._thumb else sym["st_value"]
                        funcs.append((addr, max(1, sym["st_size"]), sym.name))
                if elf.has_dwarf_info():
                    rows, ends = _line_rows(elf.get_dwarf_info())
        except OSError as exc:
            raise ElfError(f"cannot read {path}: {exc.strerror or exc}") from None
        except ELFError as exc:
            raise ElfError(f"{path}: not an ELF file ({exc})") from None
        if not funcs:
            raise ElfError(f"{path}: no function symbols (a stripped ELF?)")
        funcs.sort()
        self._fstart = [a for a, _, _ in funcs]
        self._funcs = funcs
        rows.sort()
        self._rows = rows
        self._rstart = [a for a, _, _ in rows]
        self._ends = sorted(ends)
        self.has_lines = bool(rows)

    def lookup(self, address: int, return_address: bool = False) -> Symbol:
        """``address`` as function and file:line; ``return_address`` for an lr."""
        addr = address & ~1 if self._thumb else address
        if return_address and addr:
            addr -= 1
        function = None
        i = bisect.bisect_right(self._fstart, addr) - 1
        if i >= 0:
            start, size, name = self._funcs[i]
            if addr < start + size:
                function = name
        file, line = None, None
        j = bisect.bisect_right(self._rstart, addr) - 1
        if j >= 0:
            start, f, ln = self._rows[j]
            # The row covers addr unless a sequence ended in between.
            k = bisect.bisect_right(self._ends, start)
            if k >= len(self._ends) or self._ends[k] > addr:
                file, line = f, ln
        return Symbol(address, function, file, line)


def _line_rows(dwarf: Any) -> tuple[list[tuple[int, str, int]], list[int]]:
    rows: list[tuple[int, str, int]] = []
    ends: list[int] = []
    for cu in dwarf.iter_CUs():
        prog = dwarf.line_program_for_CU(cu)
        if prog is None:
            continue
        version = prog.header["version"]
        names = []
        for entry in prog.header["file_entry"]:
            name = entry.name.decode("utf-8", "replace") if entry.name else "?"
            names.append(os.path.basename(name))
        for entry in prog.get_entries():
            st = entry.state
            if st is None:
                continue
            if st.end_sequence:
                ends.append(st.address)
                continue
            index = st.file if version >= 5 else st.file - 1  # DWARF 5 counts from 0
            name = names[index] if 0 <= index < len(names) else "?"
            rows.append((st.address, name, st.line))
    return rows, ends
