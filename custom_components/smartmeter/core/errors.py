"""One error hierarchy for the whole meter core.

Every error the core raises is a :class:`SmartMeterError`, so callers can catch
one type. Sub-classes say what went wrong and whether retrying can help.
"""

from __future__ import annotations


class SmartMeterError(Exception):
    """Base class of every error raised by the meter core."""


class DecodeError(SmartMeterError):
    """A frame could not be decoded (bad syntax, truncated, unknown format)."""


class ChecksumError(DecodeError):
    """A frame's CRC, FCS or BCC did not match its contents."""


class DecryptionError(DecodeError):
    """An encrypted frame could not be decrypted (missing or wrong key)."""


class KeyRequiredError(DecryptionError):
    """The frame is encrypted and no key was given."""


class WrongKeyError(DecryptionError):
    """The frame's authentication tag did not verify with the given key."""


class ConnectionFailedError(SmartMeterError):
    """A serial port or network bridge could not be opened or was lost."""


class NoTelegramError(SmartMeterError):
    """The link opened, but no valid frame arrived within the timeout."""
