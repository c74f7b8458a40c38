"""Luxembourg Smarty encrypted frames: decryption, encryption round trip, every failure mode."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from custom_components.smartmeter.core.errors import (
    DecodeError,
    DecryptionError,
    KeyRequiredError,
    WrongKeyError,
)
from custom_components.smartmeter.core.models import Integrity
from custom_components.smartmeter.core.p1 import decode_telegram
from custom_components.smartmeter.core.smarty import (
    GCM_TAG,
    decrypt_frame,
    encrypt_frame,
    frame_length,
    parse_key,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "p1"
FRAME = (FIXTURES / "lu_smarty_encrypted_frame.bin").read_bytes()
KEY = parse_key("D491470F47126332B07D1923B3504188")  # published with the frame (openHAB test)
OTHER_KEY = parse_key("00112233445566778899AABBCCDDEEFF")
PLAIN = (FIXTURES / "lu_smarty_sagemcom_oh.txt").read_bytes()  # valid CRC
PLAIN_OF_FRAME = (FIXTURES / "lu_smarty_sagemcom_long_decrypted.txt").read_bytes()


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The core needs no Home Assistant: override the suite-wide autouse fixture."""


def test_decrypts_the_real_frame() -> None:
    """The corpus frame decrypts to the corpus plaintext, and decodes."""
    assert frame_length(FRAME) == len(FRAME) == 0x2BA + 13
    assert decrypt_frame(FRAME, KEY) == PLAIN_OF_FRAME
    frame = decode_telegram(FRAME, key=KEY)
    assert frame.encrypted
    assert frame.raw == PLAIN_OF_FRAME
    assert frame.integrity is Integrity.INVALID  # the source's plaintext carries a stale CRC
    assert frame.version == "42"
    assert frame.main is not None
    assert frame.main.manufacturer == "Lux"
    assert frame.main.register("energy_import_total").value == Decimal("6.695")  # type: ignore[union-attr]


def test_round_trip_of_a_real_plaintext() -> None:
    """A real plaintext with a valid CRC, encrypted the way the meter does, decodes VALID."""
    encrypted = encrypt_frame(PLAIN, KEY, frame_counter=0x5A8E3)
    assert encrypted[:2] == b"\xdb\x08"
    assert frame_length(encrypted) == len(encrypted)
    frame = decode_telegram(encrypted, key=KEY)
    plain = decode_telegram(PLAIN)
    assert frame.integrity is Integrity.VALID
    assert frame.encrypted
    assert not plain.encrypted
    assert frame.raw == PLAIN
    assert frame.meters == plain.meters
    assert frame.header == plain.header


@pytest.mark.parametrize("counter", [0, 1, 0xFFFFFFFF])
@pytest.mark.parametrize("title", [b"SAG\x67\x70\x01\xbd\x54", bytes(8), b"\xff" * 8])
def test_round_trip_titles_and_counters(title: bytes, counter: int) -> None:
    """The IV is system title + frame counter: any of them round-trips."""
    encrypted = encrypt_frame(PLAIN, OTHER_KEY, system_title=title, frame_counter=counter)
    assert decrypt_frame(encrypted, OTHER_KEY) == PLAIN


def test_wrong_key() -> None:
    """A wrong key fails the GCM tag: WrongKeyError, never garbage."""
    with pytest.raises(WrongKeyError):
        decode_telegram(FRAME, key=OTHER_KEY)
    with pytest.raises(WrongKeyError):
        decrypt_frame(encrypt_frame(PLAIN, KEY), OTHER_KEY)


def test_key_of_wrong_length() -> None:
    """A key that is not 16 bytes is a wrong key."""
    with pytest.raises(WrongKeyError):
        decode_telegram(FRAME, key=KEY[:15])


def test_no_key() -> None:
    """An encrypted frame without a key asks for one."""
    with pytest.raises(KeyRequiredError):
        decode_telegram(FRAME)
    with pytest.raises(DecryptionError):
        decode_telegram(FRAME, key=None)


def test_truncated() -> None:
    """Every truncation of the frame is a DecodeError (not a key problem)."""
    for size in range(len(FRAME)):
        with pytest.raises(DecodeError) as err:
            decode_telegram(FRAME[:size], key=KEY)
        assert type(err.value) is DecodeError, size


@pytest.mark.parametrize("position", [10, 11, 12, 13, 14, 20, 100, len(FRAME) - 13, len(FRAME) - 1])
def test_corrupted_byte(position: int) -> None:
    """A changed byte (length, security byte, counter, ciphertext or tag) never decrypts."""
    damaged = bytearray(FRAME)
    damaged[position] ^= 0x01
    with pytest.raises(DecodeError):
        decode_telegram(bytes(damaged), key=KEY)


def test_frame_length() -> None:
    """The length header in its three forms; None while unknown; -1 for no frame."""
    title = b"\xdb\x08" + bytes(8)
    assert frame_length(b"") is None
    assert frame_length(b"\xdb") is None
    assert frame_length(title) is None
    assert frame_length(b"/ISK5") == -1
    assert frame_length(b"\xdb\x07" + bytes(11)) == -1  # system title must be 8 bytes
    assert frame_length(title + b"\x40\x30\x00") == 11 + 0x40
    assert frame_length(title + b"\x81\x90\x30") == 12 + 0x90
    assert frame_length(title + b"\x82\x02\xba") == 13 + 0x2BA  # security byte not checked until in
    assert frame_length(title + b"\x82\x02\xba\x30") == 13 + 0x2BA
    assert frame_length(title + b"\x82\x02\xba\x20") == 13 + 0x2BA  # encrypted, not authenticated
    assert frame_length(title + bytes([5 + GCM_TAG - 1, 0x30, 0])) == -1  # too short
    assert frame_length(title + b"\x82\xff\xff\x30") == -1  # too long for P1
    assert frame_length(title + b"\x83\x00\x00\x30") == -1
    for security in (0x00, 0x10, 0x40, 0x70, 0xB0, 0x33):  # not encrypted, broadcast, compressed, suite 3
        assert frame_length(title + bytes([0x40, security, 0])) == -1, hex(security)


def _ctr_frame(plaintext: bytes, key: bytes) -> bytes:
    """A frame encrypted without authentication (security byte 0x20: AES-CTR, no tag)."""
    title, counter = b"SAG\x67\x70\x01\xbd\x54", (7).to_bytes(4, "big")
    stream = Cipher(algorithms.AES(key), modes.CTR(title + counter + b"\x00\x00\x00\x02")).encryptor()
    body = b"\x20" + counter + stream.update(plaintext) + stream.finalize()
    return b"\xdb\x08" + title + b"\x82" + len(body).to_bytes(2, "big") + body


def test_encrypted_without_authentication() -> None:
    """Security byte without the authentication bit: AES-CTR, checked by the telegram's CRC."""
    frame = decode_telegram(_ctr_frame(PLAIN, KEY), key=KEY)
    assert frame.integrity is Integrity.VALID
    assert frame.meters == decode_telegram(PLAIN).meters
    with pytest.raises(WrongKeyError):
        decode_telegram(_ctr_frame(PLAIN, KEY), key=OTHER_KEY)


@pytest.mark.parametrize(
    "text",
    [
        "D491470F47126332B07D1923B3504188",
        "d4 91 47 0f 47 12 63 32 b0 7d 19 23 b3 50 41 88",
        "D4:91:47:0F:47:12:63:32:B0:7D:19:23:B3:50:41:88",
    ],
)
def test_parse_key(text: str) -> None:
    """32 hex digits, with or without separators, any case."""
    assert parse_key(text) == KEY


@pytest.mark.parametrize(
    "text",
    [
        "",
        "D491470F47126332B07D1923B35041",
        "D491470F47126332B07D1923B350418800",
        "X491470F47126332B07D1923B3504188",
    ],
)
def test_parse_key_rejects(text: str) -> None:
    """Anything but 16 bytes of hex is refused."""
    with pytest.raises(ValueError, match="32 hexadecimal digits"):
        parse_key(text)
