"""Host tools for failstop: decode, read and watch MicroPython fault records.

The device-side module is called ``failstop``; this host package is ``failstop_host``.
"""

from .codec import (
    Frame,
    Header,
    InvalidSlot,
    Record,
    Region,
    decode_region,
    decode_slot,
    encode_region,
    encode_slot,
    format_record,
)
from .textsafe import escape

__version__ = "0.1.0"

__all__ = [
    "Frame",
    "Header",
    "InvalidSlot",
    "Record",
    "Region",
    "__version__",
    "decode_region",
    "decode_slot",
    "encode_region",
    "encode_slot",
    "escape",
    "format_record",
]
