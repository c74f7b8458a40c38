"""Differential test: our decoder against dsmr_parser on every P1 sample of the corpus.

dsmr_parser (a test-only dependency) decodes each telegram with the
specification of its variant. Every value it reports must be what we decode
for the same line: numbers equal as Decimals, units equal, timestamps the same
instant (it returns UTC, computed from Europe/Amsterdam like our default),
M-Bus devices on the same channels, buffers entry by entry.

dsmr_parser matches lines with one regex per field and parses each line on its
own, so the comparison does the same: it runs dsmr_parser's own regexes and
value parsers line by line (checking that this sees everything its
``TelegramParser.parse`` reports) and finds our register for each line by its
OBIS code. Where the two legitimately differ, the case is listed below with the
reason; an undocumented difference, or a documented one that no longer
happens, fails the test.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from dsmr_parser import telegram_specifications
from dsmr_parser.exceptions import InvalidChecksumError, ParseError
from dsmr_parser.objects import CosemObject, MBusObject, MBusObjectPeak, ProfileGenericObject
from dsmr_parser.parsers import TelegramParser

from custom_components.smartmeter.core.models import Frame, HistoryEntry, Integrity, Register
from custom_components.smartmeter.core.p1 import decode_telegram
from custom_components.smartmeter.core.smarty import SMARTY_AUTH_KEY, encrypt_frame, parse_key
from tests.conftest import corpus_dir

CORPUS = corpus_dir()
KEY = parse_key("D491470F47126332B07D1923B3504188")  # the published openHAB test key


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The core needs no Home Assistant: override the suite-wide autouse fixture."""


@pytest.fixture(autouse=True)
def _quiet_dsmr_parser() -> None:
    """dsmr_parser logs every line it rejects: those are asserted on, not logged."""
    logging.getLogger("dsmr_parser").disabled = True


@dataclass(frozen=True)
class Case:
    """One corpus telegram and the dsmr_parser specification of its variant."""

    path: str
    spec: str
    encrypted: bool = False  # fed to dsmr_parser (and to us) as an encrypted frame

    @property
    def id(self) -> str:
        """Test id: file, specification, how it is fed."""
        return f"{Path(self.path).stem}-{self.spec}{'-encrypted' if self.encrypted else ''}"


CASES = [
    Case("dsmr/nl_dsmr22_iskra_mt382.txt", "V2_2"),
    Case("dsmr/nl_dsmr30_iskra_mt382.txt", "V3"),
    Case("dsmr/nl_dsmr42_kaifa.txt", "V4"),
    Case("dsmr/nl_dsmr42_kaifa_oh_sagemcom_xs210.txt", "V4"),
    Case("dsmr/nl_dsmr42_landisgyr_e350_nocrc.txt", "V4"),
    Case("dsmr/nl_dsmr50_iskra_mt382.txt", "V5"),
    Case("dsmr/nl_dsmr50_iskra_am550_two_mbus.txt", "V5"),
    Case("dsmr/nl_dsmr50_warmtelink_unpadded_crc.txt", "V5"),
    Case("dsmr/nl_itron_ace4000_gprs.txt", "V2_2"),
    Case("dsmr/nl_itron_ace4000_gprs.txt", "V5"),
    Case("dsmr/be_fluvius_emucs171_sagemcom_t211.txt", "BELGIUM_FLUVIUS"),
    Case("dsmr/be_fluvius_emucs171_alt.txt", "BELGIUM_FLUVIUS"),
    Case("dsmr/be_fluvius_invalid_gas_timestamp.txt", "BELGIUM_FLUVIUS"),
    Case("dsmr/lu_smarty_sagemcom_oh.txt", "LUXEMBOURG_SMARTY"),
    Case("dsmr/lu_smarty_sagemcom_oh.txt", "MSN", encrypted=True),
    Case("dsmr/lu_smarty_sagemcom_long_decrypted.txt", "LUXEMBOURG_SMARTY"),
    Case("dsmr/ie_iskra_ie5_esb.txt", "ISKRA_IE"),
    Case("dsmr/hu_eon_sagemcom.txt", "EON_HUNGARY"),
    Case("dsmr/se_landisgyr_e360.txt", "SWEDEN"),
    Case("dsmr/se_landisgyr_e360_empty.txt", "SWEDEN"),
    Case("dsmr/se_ell5_aidon_like.txt", "SWEDEN"),
    # The Austrian meter sends its telegrams encrypted: dsmr_parser's spec for it
    # takes the frame, so both decoders get the plaintext encrypted by us.
    Case("dsmr/at_sagemcom_t210dr_plain.txt", "SAGEMCOM_T210_D_R", encrypted=True),
    Case("dsmr/at_sagemcom_t210dr_oh.txt", "SAGEMCOM_T210_D_R", encrypted=True),
    Case("dsmr/at_sagemcom_t210dr_oh.txt", "V5"),
    Case("iec62056-21/de_easymeter_q3d_b1024_com1.txt", "Q3D"),
]

# Lines dsmr_parser cannot parse, with why; we decode them (the values are
# checked in test_p1_corpus.py). (file stem, dsmr_parser field, OBIS) -> reason.
DSMR_PARSER_FAILS: dict[tuple[str, str, str], str] = {
    **{
        ("be_fluvius_invalid_gas_timestamp", name, obis): (
            "the unit is glued to the value without '*' ('000123.456kWh'): dsmr_parser's "
            "Decimal() raises InvalidOperation (and aborts the whole telegram)"
        )
        for name, obis in (
            ("ELECTRICITY_USED_TARIFF_1", "1-0:1.8.1"),
            ("ELECTRICITY_USED_TARIFF_2", "1-0:1.8.2"),
            ("ELECTRICITY_DELIVERED_TARIFF_1", "1-0:2.8.1"),
            ("ELECTRICITY_DELIVERED_TARIFF_2", "1-0:2.8.2"),
            ("CURRENT_ELECTRICITY_USAGE", "1-0:1.7.0"),
            ("CURRENT_ELECTRICITY_DELIVERY", "1-0:2.7.0"),
            ("INSTANTANEOUS_VOLTAGE_L1", "1-0:32.7.0"),
            ("INSTANTANEOUS_CURRENT_L1", "1-0:31.7.0"),
            ("ACTUAL_TRESHOLD_ELECTRICITY", "0-0:17.0.0"),
            ("FUSE_THRESHOLD_L1", "1-0:31.4.0"),
        )
    },
    ("nl_dsmr42_landisgyr_e350_nocrc", "POWER_EVENT_FAILURE_LOG", "1-0:99.97.0"): (
        "the buffer states 5 entries but the meter sent 2: dsmr_parser rejects the line, "
        "we keep the stated count and the 2 entries"
    ),
    ("nl_itron_ace4000_gprs", "EQUIPMENT_IDENTIFIER_GAS", "0-3:96.1.0"): (
        "the id is padded with spaces ('12345678         '), which dsmr_parser's value regex "
        "does not allow; we keep it (and use it stripped as the meter id)"
    ),
    ("nl_itron_ace4000_gprs", "MBUS_EQUIPMENT_IDENTIFIER", "0-3:96.1.0"): (
        "the same space-padded id, under dsmr_parser V5's M-Bus field name"
    ),
}

# M-Bus channels that carry no meter (an empty equipment id and no reading):
# dsmr_parser reports their lines, we make no sub-meter. (file stem, OBIS) -> reason.
NO_SUB_METER = "an M-Bus channel with an empty id and no reading has no meter: we make no sub-meter for it"
ABSENT_HERE: dict[tuple[str, str], str] = {
    ("nl_dsmr50_iskra_mt382", "0-2:24.1.0"): NO_SUB_METER,
    ("nl_dsmr50_iskra_mt382", "0-2:96.1.0"): NO_SUB_METER,
    ("ie_iskra_ie5_esb", "0-1:96.1.1"): NO_SUB_METER,
}


def _spec(name: str) -> dict[str, Any]:
    return copy.deepcopy(getattr(telegram_specifications, name))


def _plaintext(case: Case) -> bytes:
    return (CORPUS / case.path).read_bytes()


def _ours(case: Case) -> Frame:
    if case.encrypted:
        return decode_telegram(encrypt_frame(_plaintext(case), KEY), key=KEY)
    return decode_telegram(_plaintext(case))


def _theirs_official(case: Case, *, checksum: bool) -> Any:
    """dsmr_parser's own TelegramParser.parse result."""
    parser = TelegramParser(_spec(case.spec), apply_checksum_validation=checksum)
    if case.encrypted:
        frame = encrypt_frame(_plaintext(case), KEY)
        return parser.parse(frame.hex(), encryption_key=KEY.hex(), authentication_key=SMARTY_AUTH_KEY.hex())
    return parser.parse(_plaintext(case).decode("latin-1"))


@dataclass
class Parsed:
    """One line dsmr_parser matched: its field name, the line, and its object (or error)."""

    name: str
    line: str
    result: Any

    @property
    def obis(self) -> str:
        """The line's OBIS code, without a ``*255`` suffix."""
        code = self.line.split("(", 1)[0]
        return code.split("*", 1)[0]


def _theirs_by_line(case: Case) -> list[Parsed]:
    """dsmr_parser's parse, line by line: the same regexes and value parsers, in order."""
    spec = _spec(case.spec)
    parser = TelegramParser(spec)
    text = _plaintext(case).decode("latin-1")
    parsed = []
    for obj in spec["objects"]:
        for line in parser.telegram_specification_regexes[obj["obis_reference"]].findall(text):
            try:
                result = obj["value_parser"].parse(line)
            except Exception as err:  # recorded, and asserted on below
                result = err
            parsed.append(Parsed(obj["value_name"], line, result))
    return parsed


def _our_register(frame: Frame, obis: str) -> Register | None:
    a, rest = obis.split("-", 1)
    channel = int(rest.split(":", 1)[0])
    if a == "0" and channel:
        meters = [meter for meter in frame.meters if meter.channel == channel]
    elif a in ("0", "1"):
        meters = [meter for meter in frame.meters if meter.channel == 0]
    else:  # medium-coded (7-0:...): on whichever M-Bus meter it joined
        meters = [meter for meter in frame.meters if meter.channel]
    found = [reg for meter in meters for reg in meter.registers if reg.obis == obis]
    assert len(found) <= 1, obis
    return found[0] if found else None


def _same_instant(ours: object, theirs: datetime | None) -> None:
    if theirs is None:
        assert ours is None
        return
    assert isinstance(ours, datetime)
    assert theirs.tzinfo is not None
    assert ours.astimezone(UTC) == theirs.astimezone(UTC)


def _same_value(ours: object, theirs: object, name: str) -> None:
    """One value: dsmr_parser's (Decimal, int, str, UTC datetime, None) against ours."""
    if theirs is None:
        assert ours is None
    elif isinstance(theirs, datetime):
        _same_instant(ours, theirs)
    elif isinstance(theirs, Decimal):
        assert isinstance(ours, Decimal)
        assert ours == theirs
    elif isinstance(theirs, int):
        if name == "TEXT_MESSAGE_CODE":
            # dsmr_parser makes an int of the text message code, an octet
            # string (DSMR P1 6.12); we keep the text. Same digits.
            assert isinstance(ours, str)
            assert int(ours) == theirs
        else:
            assert isinstance(ours, Decimal | int)
            assert ours == theirs
    else:
        assert isinstance(theirs, str)
        if isinstance(ours, Decimal):
            # dsmr_parser keeps some numbers as text (tariff "0002", switch
            # position "1", DSMR 2.2 device type "3"): the same number.
            assert ours == Decimal(theirs)
        else:
            assert ours == theirs


def _same_entry(ours: HistoryEntry, theirs: Any, name: str) -> None:
    if isinstance(theirs, MBusObjectPeak):  # Belgian 13-month peaks
        _same_instant(ours.start, theirs.datetime)
        _same_instant(ours.timestamp, theirs.occurred)
    else:  # a power failure: end time, duration
        _same_instant(ours.timestamp, theirs.datetime)
    _same_value(ours.value, theirs.value, name)
    assert ours.unit == theirs.unit


def _compare(ours: Register, theirs: Any, name: str) -> None:
    """Every value of one dsmr_parser object against our register for the line."""
    if isinstance(theirs, list):  # MaxDemandParser: the Belgian 13-month history
        assert len(ours.history) == len(theirs)
        for entry, peak in zip(ours.history, theirs, strict=True):
            _same_entry(entry, peak, name)
    elif isinstance(theirs, ProfileGenericObject):  # 99.97.0 power failure log
        # Its capture object id (buffer_type, always 0-0:96.7.19 for 99.97.0)
        # is not kept: the register's OBIS code says what the buffer holds.
        assert theirs.buffer_type in ("0-0:96.7.19", None)
        _same_value(ours.value, theirs.buffer_length, name)
        assert len(ours.history) == len(theirs.buffer)
        for entry, item in zip(ours.history, theirs.buffer, strict=True):
            _same_entry(entry, item, name)
    elif isinstance(theirs, MBusObject):  # (timestamp)(value*unit)
        _same_value(ours.value, theirs.value, name)
        assert ours.unit == theirs.unit
        _same_instant(ours.timestamp, theirs.datetime)
    else:
        assert isinstance(theirs, CosemObject)
        assert len(theirs.values) == 1, "a multi-value object: compare every value"
        _same_value(ours.value, theirs.value, name)
        assert ours.unit == theirs.unit


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_every_value_agrees(case: Case) -> None:
    """Every value dsmr_parser reports for the telegram is ours too, or the difference is documented."""
    stem = Path(case.path).stem
    ours = _ours(case)
    failures: set[tuple[str, str, str]] = set()
    absent: set[tuple[str, str]] = set()
    compared: set[str] = set()
    for item in _theirs_by_line(case):
        if isinstance(item.result, Exception):
            failures.add((stem, item.name, item.obis))
            continue
        reg = _our_register(ours, item.obis)
        if reg is None:
            absent.add((stem, item.obis))
            assert item.result.value in (None, 3), "only an empty channel's id or device type"
        else:
            _compare(reg, item.result, item.name)
        compared.add(item.name)
    fields = {obj["value_name"] for obj in _spec(case.spec)["objects"]}
    assert failures == {k for k in DSMR_PARSER_FAILS if k[0] == stem and k[1] in fields}
    assert absent == {k for k in ABSENT_HERE if k[0] == stem}
    assert compared, "dsmr_parser found nothing to compare"

    # The line-by-line run saw everything dsmr_parser's own parse reports.
    if failures:  # a line that raises anything but ParseError aborts its parse
        return
    telegram = _theirs_official(case, checksum=False)
    reported = {name for name, _obj in telegram if name != "MBUS_DEVICES"}
    for device in getattr(telegram, "MBUS_DEVICES", []):
        reported |= {name for name, _obj in device}
    assert reported <= compared
    # The same M-Bus devices, on the same channels (but for documented empty ones).
    empty = {int(obis.split(":")[0][2:]) for file, obis in ABSENT_HERE if file == stem}
    theirs = {device.channel_id for device in getattr(telegram, "MBUS_DEVICES", [])}
    assert {meter.channel for meter in ours.meters if meter.channel} == theirs - empty


PLAIN = [case for case in CASES if not case.encrypted]


@pytest.mark.parametrize("case", PLAIN, ids=[case.id for case in PLAIN])
def test_crc_verdict_agrees(case: Case) -> None:
    """dsmr_parser's checksum validation and our integrity verdict agree."""
    text = _plaintext(case).decode("latin-1")
    try:
        TelegramParser.validate_checksum(text)
    except InvalidChecksumError:
        expected = Integrity.INVALID
    except ParseError:  # no CRC to validate
        expected = Integrity.ABSENT
    else:
        expected = Integrity.VALID
    assert _ours(case).integrity is expected


def test_real_smarty_frame_agrees() -> None:
    """The real Smarty frame: dsmr_parser's MSN decryption and ours give the same values."""
    frame = bytes.fromhex((CORPUS / "smarty" / "lu_smarty_encrypted_frame.hex").read_text().strip())
    ours = decode_telegram(frame, key=KEY)
    theirs = TelegramParser(_spec("MSN"), apply_checksum_validation=False).parse(
        frame.hex(), encryption_key=KEY.hex()
    )
    with pytest.raises(InvalidChecksumError):  # the plaintext's CRC is wrong: both say so
        TelegramParser(_spec("MSN")).parse(frame.hex(), encryption_key=KEY.hex())
    assert ours.integrity is Integrity.INVALID
    plaintext = ours.raw.decode("latin-1")
    spec = _spec("MSN")
    parser = TelegramParser(spec)
    seen = 0
    for obj in spec["objects"]:
        for line in parser.telegram_specification_regexes[obj["obis_reference"]].findall(plaintext):
            item = Parsed(obj["value_name"], line, obj["value_parser"].parse(line))
            reg = _our_register(ours, item.obis)
            assert reg is not None
            _compare(reg, item.result, item.name)
            seen += 1
    reported = {name for name, _obj in theirs}
    assert seen >= len(reported) > 20


def test_every_sample_has_a_case() -> None:
    """No P1 sample of the corpus escapes the comparison."""
    covered = {case.path for case in CASES}
    assert {f"dsmr/{path.name}" for path in (CORPUS / "dsmr").glob("*.txt")} <= covered
