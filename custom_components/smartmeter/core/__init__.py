"""smartmeter core: meter protocols, framers, sources and the meter model.

Pure asyncio Python with no Home Assistant imports, so it can be published as
its own library. The Home Assistant integration around it is a thin layer.
"""

from .errors import (
    ChecksumError,
    ConnectionFailedError,
    DecodeError,
    DecryptionError,
    KeyRequiredError,
    NoTelegramError,
    SmartMeterError,
    WrongKeyError,
)
from .models import Frame, HistoryEntry, Integrity, LinkStats, Medium, Meter, Register

__all__ = [
    "ChecksumError",
    "ConnectionFailedError",
    "DecodeError",
    "DecryptionError",
    "Frame",
    "HistoryEntry",
    "Integrity",
    "KeyRequiredError",
    "LinkStats",
    "Medium",
    "Meter",
    "NoTelegramError",
    "Register",
    "SmartMeterError",
    "WrongKeyError",
]
