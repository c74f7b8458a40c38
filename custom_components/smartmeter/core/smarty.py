"""DLMS general-global-cipher frames as sent by Luxembourg Smarty P1 ports.

Layout: ``DB 08 <system title:8> <length> <security:1> <frame counter:4>
<ciphertext> <GCM tag:12>``. AES-128-GCM with IV = system title + frame counter
and AAD = security byte + the authentication key (fixed and public for Smarty).
"""

from __future__ import annotations

import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .errors import DecodeError, KeyRequiredError, WrongKeyError

GLO_CIPHER_TAG = 0xDB
GCM_TAG = 12
# Luxmetering E-Meter P1 specification 1.1.3, 3.2.5: same for every meter.
SMARTY_AUTH_KEY = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
MAX_FRAME = 4096
# The end of a telegram: its "!" line (CRC digits, if any) and the line end.
_TELEGRAM_END = re.compile(rb"[\r\n]![0-9A-Fa-f]{0,4}[ \t]*(?:\r\n|\r|\n)?\Z")


def frame_length(head: bytes | bytearray) -> int | None:
    """Total length of a general-global-cipher frame from its first bytes.

    Returns ``None`` while fewer than 13 bytes are known, ``-1`` when the bytes
    cannot start such a frame (checked as far as they go: the length, then the
    security control byte once it is in).
    """
    if len(head) < 2:
        return None
    if head[0] != GLO_CIPHER_TAG or head[1] != 8:
        return -1
    if len(head) < 13:
        return None
    first = head[10]
    if first < 0x80:
        length, hdr = first, 11
    elif first == 0x81:
        length, hdr = head[11], 12
    elif first == 0x82:
        length, hdr = (head[11] << 8) | head[12], 13
    else:
        return -1
    total = hdr + length
    if length < 5 + GCM_TAG or total > MAX_FRAME:
        return -1
    if len(head) > hdr and not _plausible_security(head[hdr]):
        return -1
    return total


def _plausible_security(control: int) -> bool:
    """A security control byte of an encrypted P1 frame (0x30 on Smarty meters).

    Encrypted (bit 5), optionally authenticated (bit 4), no broadcast key or
    compression (bits 6, 7), security suite 0-2. Checking it keeps a stray
    "DB 08" in line noise from posing as a frame start (one time in ~680).
    """
    return control & 0xE0 == 0x20 and control & 0x0F <= 2


def parse_key(text: str) -> bytes:
    """A 16-byte AES key from 32 hex digits (spaces and colons allowed)."""
    cleaned = "".join(ch for ch in text if ch not in " :-")
    try:
        key = bytes.fromhex(cleaned)
    except ValueError as err:
        raise ValueError("key must be 32 hexadecimal digits") from err
    if len(key) != 16:
        raise ValueError("key must be 32 hexadecimal digits")
    return key


def decrypt_frame(
    frame: bytes,
    key: bytes | None,
    *,
    tag_length: int = GCM_TAG,
    auth_key: bytes = SMARTY_AUTH_KEY,
) -> bytes:
    """Return the plaintext telegram of an encrypted frame.

    Raises :class:`KeyRequiredError` without a key, :class:`WrongKeyError` when
    the GCM tag does not verify, :class:`DecodeError` for a malformed frame.
    """
    total = frame_length(frame)
    if total is None or total < 0 or len(frame) < total:
        raise DecodeError("malformed or truncated encrypted frame")
    if key is None:
        raise KeyRequiredError("the telegram is encrypted: a decryption key is required")
    if len(key) != 16:
        raise WrongKeyError("the decryption key must be 16 bytes")
    title = bytes(frame[2:10])
    hdr = total - (
        frame[10] if frame[10] < 0x80 else (frame[11] if frame[10] == 0x81 else (frame[11] << 8) | frame[12])
    )
    security = frame[hdr]
    counter = bytes(frame[hdr + 1 : hdr + 5])
    body = bytes(frame[hdr + 5 : total])
    iv = title + counter
    if security & 0x10:  # authenticated: GCM with tag
        ciphertext, tag = body[:-tag_length], body[-tag_length:]
        decryptor = Cipher(algorithms.AES(key), modes.GCM(iv, tag, min_tag_length=tag_length)).decryptor()
        decryptor.authenticate_additional_data(bytes([security]) + auth_key)
        try:
            return decryptor.update(ciphertext) + decryptor.finalize()
        except InvalidTag as err:
            raise WrongKeyError("the decryption key is wrong (authentication failed)") from err
    # Encrypted only: AES-CTR from counter block 2, plaintext must look like P1.
    stream = Cipher(algorithms.AES(key), modes.CTR(iv + b"\x00\x00\x00\x02")).decryptor()
    plain = stream.update(body) + stream.finalize()
    if not plain.startswith(b"/"):
        raise WrongKeyError("the decryption key is wrong (no telegram after decryption)")
    if _TELEGRAM_END.search(plain, max(0, len(plain) - 32)) is None:
        # Nothing authenticates this frame, so the telegram must fill it: an
        # authenticated frame whose security byte lost its authentication bit
        # on the line would otherwise decrypt, its GCM tag left unchecked.
        raise DecodeError("unauthenticated encrypted frame with data after the telegram's end")
    return plain


def encrypt_frame(
    plaintext: bytes,
    key: bytes,
    *,
    system_title: bytes = b"SAG\x67\x70\x01\xbd\x54",
    frame_counter: int = 1,
    auth_key: bytes = SMARTY_AUTH_KEY,
) -> bytes:
    """Build an encrypted frame the way a Smarty meter does (simulator, tests)."""
    security = 0x30
    iv = system_title + frame_counter.to_bytes(4, "big")
    encryptor = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
    encryptor.authenticate_additional_data(bytes([security]) + auth_key)
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    body = bytes([security]) + frame_counter.to_bytes(4, "big") + ciphertext + encryptor.tag[:GCM_TAG]
    return b"\xdb\x08" + system_title + b"\x82" + len(body).to_bytes(2, "big") + body
