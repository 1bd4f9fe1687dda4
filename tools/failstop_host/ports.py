"""Serial port names as mpremote spells them, for every ``failstop`` command.

``-p/--port NAME`` (or the ``FAILSTOP_PORT`` environment variable when no option is
given) accepts:

* ``auto`` (the default): the first USB serial device, as ``mpremote connect auto``;
* mpremote's short names ``a0`` … ``/dev/ttyACM0``, ``u0`` … ``/dev/ttyUSB0``,
  ``c0`` … ``COM0`` (any number);
* ``id:SERIAL``: the USB serial device with that serial number;
* ``port:PATH``: PATH exactly as given (a name that would otherwise look like a short name);
* anything else: a device path (``/dev/ttyACM0``, ``COM3``) or a pyserial URL
  (``socket://host:port``, ``rfc2217://host:port``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, Optional

ENV = "FAILSTOP_PORT"
_SHORT = re.compile(r"([auc])(\d+)\Z")
_PREFIX = {"a": "/dev/ttyACM", "u": "/dev/ttyUSB", "c": "COM"}


class PortError(Exception):
    """A port name that names no device."""


def _comports() -> list[Any]:
    import serial.tools.list_ports

    return list(serial.tools.list_ports.comports())


def usb_ports() -> list[str]:
    """USB serial devices, sorted by name (the candidates mpremote's ``auto`` tries)."""
    return sorted(p.device for p in _comports() if p.vid is not None and p.pid is not None)


def port_name(name: Optional[str], env: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The port ``name`` (or ``$FAILSTOP_PORT`` when it is None) stands for; None for
    ``auto`` (the caller tries the USB serial devices). PortError for an ``id:`` that
    matches no device."""
    env = os.environ if env is None else env
    if name is None:
        name = env.get(ENV) or "auto"
    if name == "auto":
        return None
    if name.startswith("port:"):
        return name[len("port:") :]
    if name.startswith("id:"):
        serial_number = name[len("id:") :]
        for p in _comports():
            if p.serial_number == serial_number:
                return str(p.device)
        raise PortError(f"no serial device with serial number {serial_number!r}")
    m = _SHORT.match(name)
    if m:
        return _PREFIX[m[1]] + m[2]
    return name


def first_usb_port() -> str:
    """``auto`` for a command that needs one port: the first USB serial device."""
    ports = usb_ports()
    if not ports:
        raise PortError(f"no USB serial device found; name the port (--port, or {ENV})")
    return ports[0]
