"""The board's filesystem and builtins: modules imported from the board's root (and
``lib/``) are compiled and run as the program's own code (traced, with the board's
builtins); ``bytearray(n)`` asks the simulated heap for ``n`` bytes first."""

from __future__ import annotations

import builtins
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from .runtime import Runtime


class SizedGuard:
    """Stands for ``bytearray`` in the program's builtins. ``bytearray(n)`` with an int
    ``n`` is checked against the simulated heap before CPython allocates it, so a huge
    request fails as on the board, with its size ("allocating n bytes"), instead of
    taking host memory. Everything else (isinstance, subclassing, class methods) is the
    real type's; only ``type(x) is bytearray`` differs (see docs/simulator.md)."""

    def __init__(self, real: type, rt: Runtime) -> None:
        self._real = real
        self._rt = rt

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if args and isinstance(args[0], int) and not isinstance(args[0], bool):
            self._rt.heap.sized_alloc(args[0])
        return self._real(*args, **kwargs)

    def __instancecheck__(self, obj: object) -> bool:
        return isinstance(obj, self._real)

    def __subclasscheck__(self, cls: type) -> bool:
        return issubclass(cls, self._real)

    def __mro_entries__(self, bases: tuple[Any, ...]) -> tuple[type, ...]:
        return (self._real,)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def __repr__(self) -> str:
        return repr(self._real)


def device_builtins(rt: Runtime) -> dict[str, Any]:
    b = dict(vars(builtins))
    b["bytearray"] = SizedGuard(bytearray, rt)
    return b


class DeviceFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``name`` from ``root/name.py``, ``root/name/__init__.py`` or the same under
    ``root/lib`` (MicroPython's default sys.path on a board)."""

    def __init__(self, rt: Runtime, root: Path, builtins_dict: dict[str, Any]) -> None:
        self.rt = rt
        self.root = root
        self.builtins = builtins_dict

    def _find(self, fullname: str, path: Optional[Sequence[str]]) -> Optional[tuple[Path, bool]]:
        parts = fullname.split(".")
        bases = [Path(p) for p in path] if path else [self.root, self.root / "lib"]
        for base in bases:
            try:
                base.resolve().relative_to(self.root.resolve())
            except ValueError:
                continue
            pkg = base / parts[-1] / "__init__.py"
            if pkg.is_file():
                return pkg, True
            mod = base / (parts[-1] + ".py")
            if mod.is_file():
                return mod, False
        return None

    def find_spec(
        self,
        fullname: str,
        path: Optional[Sequence[str]],
        target: Optional[types.ModuleType] = None,
    ) -> Optional[importlib.machinery.ModuleSpec]:
        found = self._find(fullname, path)
        if found is None:
            return None
        file, is_pkg = found
        spec = importlib.machinery.ModuleSpec(fullname, self, origin=str(file), is_package=is_pkg)
        if is_pkg:
            spec.submodule_search_locations = [str(file.parent)]
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[types.ModuleType]:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        spec = module.__spec__
        assert spec is not None and spec.origin is not None
        path = Path(spec.origin)
        name = str(path.relative_to(self.root))
        code = compile(path.read_bytes(), name, "exec", dont_inherit=True)
        self.rt.device_files.add(name)
        module.__file__ = name
        module.__dict__["__builtins__"] = self.builtins
        exec(code, module.__dict__)


class MissingModules(importlib.abc.MetaPathFinder):
    """Modules the firmware is built without (Resources.missing_modules): not found."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(
        self,
        fullname: str,
        path: Optional[Sequence[str]],
        target: Optional[types.ModuleType] = None,
    ) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname.split(".", 1)[0] in self.names:
            raise ModuleNotFoundError(f"No module named '{fullname}'", name=fullname)
        return None


def install(rt: Runtime, root: Path) -> dict[str, Any]:
    """Device imports from ``root``; returns the builtins for the program's globals."""
    b = device_builtins(rt)
    sys.meta_path.insert(0, DeviceFinder(rt, root, b))
    missing = rt.res.missing_modules
    if missing:
        for name in list(sys.modules):  # this boot's process only
            if name.split(".", 1)[0] in missing:
                del sys.modules[name]
        sys.meta_path.insert(0, MissingModules(missing))
    return b
