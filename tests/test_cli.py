"""The ``decode`` command line over every P1 sample of the shared corpus."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from custom_components.smartmeter.core import cli
from custom_components.smartmeter.core.cli import (
    PROTOCOLS,
    ProtocolSpec,
    decode_capture,
    dumps,
    main,
    register_protocol,
)
from custom_components.smartmeter.core.errors import DecodeError
from custom_components.smartmeter.core.models import Frame, Integrity
from custom_components.smartmeter.core.p1 import decode_telegram

from .conftest import ROOT, corpus_dir

SMARTY_KEY = "D491470F47126332B07D1923B3504188"  # published test key (corpus MANIFEST.md)
WRONG_KEY = "00112233445566778899AABBCCDDEEFF"
# The encrypted Smarty sample decrypts to exactly this plaintext (MANIFEST.md).
SMARTY_PLAINTEXT = "dsmr/lu_smarty_sagemcom_long_decrypted.txt"
CRC_VERDICT = {"valid": "valid", "INVALID": "invalid", "no-crc": "absent"}


def _corpus() -> Path | None:
    try:
        return corpus_dir()
    except FileNotFoundError:
        return None


CORPUS = _corpus()
MANIFEST: dict[str, dict[str, Any]] = (
    {entry["file"]: entry for entry in json.loads((CORPUS / "manifest.json").read_text())} if CORPUS else {}
)
P1_SAMPLES = sorted(p.relative_to(CORPUS).as_posix() for p in CORPUS.glob("dsmr/*.txt")) if CORPUS else []
SMARTY_SAMPLES = sorted(p.name for p in CORPUS.glob("smarty/*")) if CORPUS else []


def expected_crc(sample: str) -> str:
    """The manifest's CRC verdict for a P1 sample, in the CLI's words."""
    return CRC_VERDICT[MANIFEST[sample]["crc"]["crc_status"]]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any] | None, list[str]]:
    """Run ``main`` in-process: (exit code, parsed JSON or None, stderr lines)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    data = json.loads(out, parse_float=Decimal) if out.strip() else None
    return code, data, err.splitlines()


def _json_value(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def assert_faithful(frame_json: dict[str, Any], frame: Frame) -> None:
    """The JSON carries every register of the frame, values and units exactly."""
    assert frame_json["crc"] == frame.integrity.value
    assert len(frame_json["meters"]) == len(frame.meters)
    for meter_json, meter in zip(frame_json["meters"], frame.meters, strict=True):
        assert meter_json["id"] == meter.id
        assert meter_json["medium"] == meter.medium.value
        assert meter_json["channel"] == meter.channel
        assert len(meter_json["registers"]) == len(meter.registers)
        for reg_json, reg in zip(meter_json["registers"], meter.registers, strict=True):
            assert reg_json["obis"] == reg.obis
            assert reg_json["key"] == reg.key
            assert reg_json["value"] == _json_value(reg.value)
            assert reg_json["unit"] == reg.unit
            assert reg_json["timestamp"] == _json_value(reg.timestamp)
            assert len(reg_json.get("history", [])) == len(reg.history)


def test_corpus_found() -> None:
    assert CORPUS is not None, "../shared/corpus is missing"
    assert len(P1_SAMPLES) >= 20
    assert SMARTY_SAMPLES


@pytest.mark.parametrize("sample", P1_SAMPLES)
def test_decode_p1_sample(capsys: pytest.CaptureFixture[str], sample: str) -> None:
    assert CORPUS is not None
    path = CORPUS / sample
    verdict = expected_crc(sample)
    code, data, err = run(capsys, str(path))
    assert data is not None
    assert data["protocol"] == "dsmr"
    assert [frame["crc"] for frame in data["frames"]] == [verdict]
    assert_faithful(data["frames"][0], decode_telegram(path.read_bytes()))
    if verdict == "invalid":
        assert code == 1
        assert err == ["decode: no frame with a valid CRC: 1 frame failed its CRC"]
    else:
        assert code == 0
        assert err == []


@pytest.mark.parametrize("sample", SMARTY_SAMPLES)
def test_decode_smarty_with_key(capsys: pytest.CaptureFixture[str], sample: str) -> None:
    assert CORPUS is not None
    code, data, err = run(capsys, "--key", SMARTY_KEY, str(CORPUS / "smarty" / sample))
    assert data is not None
    [frame] = data["frames"]
    assert frame["encrypted"] is True
    # The published frame's plaintext carries a wrong CRC, as the manifest says.
    assert frame["crc"] == expected_crc(SMARTY_PLAINTEXT) == "invalid"
    plain = decode_telegram((CORPUS / SMARTY_PLAINTEXT).read_bytes())
    assert frame["meters"][0]["id"] == plain.meters[0].id
    assert_faithful({**frame, "crc": plain.integrity.value}, plain)
    assert code == 1
    assert err == ["decode: no frame with a valid CRC: 1 frame failed its CRC"]


@pytest.mark.parametrize("sample", SMARTY_SAMPLES)
def test_decode_smarty_without_key(capsys: pytest.CaptureFixture[str], sample: str) -> None:
    assert CORPUS is not None
    code, data, err = run(capsys, str(CORPUS / "smarty" / sample))
    assert code == 1
    assert data is not None
    assert data["frames"] == []
    assert err == ["decode: encrypted telegram: pass --key"]


@pytest.mark.parametrize("sample", SMARTY_SAMPLES)
def test_decode_smarty_wrong_key(capsys: pytest.CaptureFixture[str], sample: str) -> None:
    assert CORPUS is not None
    code, data, err = run(capsys, "--key", WRONG_KEY, str(CORPUS / "smarty" / sample))
    assert code == 1
    assert data is not None
    assert data["errors"] == ["wrong key"]
    assert err == ["decode: wrong key: 1 encrypted frame did not decrypt"]


def test_smarty_plaintext_with_valid_crc(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A frame built the way a Smarty meter builds it decrypts and exits 0."""
    assert CORPUS is not None
    from custom_components.smartmeter.core.smarty import encrypt_frame, parse_key

    plain = (CORPUS / "dsmr" / "lu_smarty_sagemcom_oh.txt").read_bytes()
    capture = tmp_path / "frame.hex"
    capture.write_text(encrypt_frame(plain, parse_key(SMARTY_KEY)).hex().upper() + "\n")
    code, data, err = run(capsys, "--key", SMARTY_KEY, "--tz", "Europe/Luxembourg", str(capture))
    assert (code, err) == (0, [])
    assert data is not None
    assert data["frames"][0]["crc"] == "valid"
    assert data["frames"][0]["encrypted"] is True


def test_every_sample_in_one_capture(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A file holding many telegrams (and the encrypted frame) yields them all, in order."""
    assert CORPUS is not None
    parts = [(CORPUS / sample).read_bytes() for sample in P1_SAMPLES]
    parts.insert(3, (CORPUS / "smarty" / "lu_smarty_encrypted_frame.bin").read_bytes())
    capture = tmp_path / "all.bin"
    capture.write_bytes(b"".join(parts))
    code, data, err = run(capsys, "--protocol", "dsmr", "--key", SMARTY_KEY, str(capture))
    assert (code, err) == (0, [])
    assert data is not None
    verdicts = [expected_crc(sample) for sample in P1_SAMPLES]
    verdicts.insert(3, "invalid")
    assert [frame["crc"] for frame in data["frames"]] == verdicts
    assert data["discarded_bytes"] == 0


def test_stdin_plain_and_hex(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert CORPUS is not None
    telegram = (CORPUS / "dsmr" / "nl_dsmr50_iskra_mt382.txt").read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(telegram)))
    code, data, _ = run(capsys, "-")
    assert code == 0
    assert data is not None
    assert data["frames"][0]["crc"] == "valid"

    frame = (CORPUS / "smarty" / "lu_smarty_encrypted_frame.bin").read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(frame.hex().encode() + b"\n")))
    code, data, _ = run(capsys, "--key", SMARTY_KEY, "-")
    assert code == 1
    assert data is not None
    assert data["frames"][0]["encrypted"] is True


def test_crc_at_end_of_file_without_line_end(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert CORPUS is not None
    capture = tmp_path / "cut.txt"
    capture.write_bytes((CORPUS / "dsmr" / "se_landisgyr_e360.txt").read_bytes().rstrip(b"\r\n"))
    code, data, _ = run(capsys, str(capture))
    assert code == 0
    assert data is not None
    assert [frame["crc"] for frame in data["frames"]] == ["valid"]
    assert data["discarded_bytes"] == 0


def test_valid_frame_after_invalid_one(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert CORPUS is not None
    good = (CORPUS / "dsmr" / "nl_dsmr42_kaifa.txt").read_bytes()
    bad = good.replace(b"1-0:1.8.1(001", b"1-0:1.8.1(002", 1)
    assert bad != good
    capture = tmp_path / "two.txt"
    capture.write_bytes(b"noise" + bad + good)
    code, data, err = run(capsys, str(capture))
    assert (code, err) == (0, [])
    assert data is not None
    assert [frame["crc"] for frame in data["frames"]] == ["invalid", "valid"]
    assert data["discarded_bytes"] == 5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (bytes(range(256)) * 8, "decode: no dsmr telegram found (2048 bytes of other data)"),
        (b"", "decode: no dsmr telegram found"),
        (b"/XYZ5 no end marker\r\n1-0:1.8.1(1*kWh)\r\n", "decode: no dsmr telegram found"),
    ],
)
def test_garbage(capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes, message: str) -> None:
    capture = tmp_path / "garbage.bin"
    capture.write_bytes(content)
    code, data, err = run(capsys, str(capture))
    assert code == 1
    assert err == [message]
    assert data is not None
    assert data["frames"] == []


def test_bad_hex_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    capture = tmp_path / "bad.hex"
    capture.write_text("DB08 not hex\n")
    code, data, err = run(capsys, str(capture))
    assert (code, data) == (1, None)
    assert err == [f"decode: {capture}: not hex text"]


def test_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, data, err = run(capsys, str(tmp_path / "nope.txt"))
    assert (code, data) == (1, None)
    assert err == [f"decode: cannot read {tmp_path / 'nope.txt'}: No such file or directory"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--key", "1234", "x"], "decode: argument --key: key must be 32 hexadecimal digits (see --help)"),
        (
            ["--tz", "Nowhere/City", "x"],
            "decode: argument --tz: unknown time zone 'Nowhere/City' (see --help)",
        ),
        (["--protocol", "nope", "x"], "decode: argument --protocol: invalid choice"),
        ([], "decode: the following arguments are required: FILE (see --help)"),
    ],
)
def test_bad_arguments(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith(message)


def test_help_lists_protocols(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "dsmr (P1 / DSMR telegrams" in capsys.readouterr().out


def test_time_zone_is_applied(capsys: pytest.CaptureFixture[str]) -> None:
    assert CORPUS is not None
    path = str(CORPUS / "dsmr" / "nl_dsmr42_kaifa.txt")
    _, amsterdam, _ = run(capsys, path)
    _, utc, _ = run(capsys, "--tz", "UTC", path)
    assert amsterdam is not None
    assert utc is not None
    assert amsterdam["frames"][0]["meters"][0]["timestamp"].endswith("+01:00")
    assert utc["frames"][0]["meters"][0]["timestamp"].endswith("+00:00")


def test_units_as_the_meter_stated_them(capsys: pytest.CaptureFixture[str]) -> None:
    assert CORPUS is not None
    _, data, _ = run(capsys, str(CORPUS / "dsmr" / "at_sagemcom_t210dr_plain.txt"))
    assert data is not None
    units = {reg["unit"] for reg in data["frames"][0]["meters"][0]["registers"]}
    assert {"Wh", "W", "varh"} <= units
    assert "kWh" not in units


def test_dumps_is_exact() -> None:
    text = dumps(
        {
            "a": Decimal("002130.115"),
            "b": Decimal("0.000"),
            "c": [Decimal("-1.5"), Decimal("NaN"), 3, 1.25, True, None, "x\u00e9"],
            "d": datetime.fromisoformat("2024-01-02T03:04:05+01:00"),
            "e": {},
            "f": [],
            "g": [{"nested": [1, {"deep": Integrity.VALID}]}],
            "h": object.__new__(_Opaque),
        }
    )
    assert '"a": 2130.115' in text
    assert '"b": 0.000' in text
    parsed = json.loads(text, parse_float=Decimal)
    assert parsed["a"] == Decimal("2130.115")
    assert parsed["c"] == [Decimal("-1.5"), None, 3, Decimal("1.25"), True, None, "x\u00e9"]
    assert parsed["d"] == "2024-01-02T03:04:05+01:00"
    assert parsed["e"] == {}
    assert parsed["f"] == []
    assert parsed["g"] == [{"nested": [1, {"deep": "valid"}]}]
    assert parsed["h"] == "opaque"


class _Opaque:
    def __str__(self) -> str:
        return "opaque"


def test_protocol_registry_is_extensible(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A new protocol plugs in with its framer, decoder and sniffing test."""
    monkeypatch.setattr(cli, "PROTOCOLS", dict(PROTOCOLS))

    def split(data: bytes) -> tuple[list[bytes], int]:
        return [line for line in data.split(b"\n") if line], 0

    def decode(raw: bytes, key: bytes | None, tz: object) -> Frame:
        if raw == b"BOOM":
            raise RuntimeError("kaput")
        if raw == b"BAD":
            raise DecodeError("not a toy frame")
        return Frame(protocol="toy", integrity=Integrity.ABSENT, meters=())

    register_protocol(
        ProtocolSpec(
            name="toy", description="test", split=split, decode=decode, sniff=lambda d: d[:3] == b"TOY"
        )
    )
    assert cli.PROTOCOLS is not PROTOCOLS
    assert "toy" not in PROTOCOLS

    assert decode_capture(b"TOY\n").protocol == "toy"
    assert decode_capture(b"/X5\r\n!\r\n").protocol == "dsmr"
    assert decode_capture(b"nothing known").protocol == "dsmr"  # the first registered

    report = decode_capture(b"TOY\nBOOM\nBAD\n", protocol="toy")
    assert len(report.frames) == 1
    assert report.undecodable == ["decoder error RuntimeError: kaput", "not a toy frame"]
    assert report.failure() is None

    report = decode_capture(b"BOOM\nBAD\n", protocol="toy")
    assert report.failure() == "2 frames could not be decoded: decoder error RuntimeError: kaput"

    capture = tmp_path / "toy.txt"
    capture.write_bytes(b"TOY\n")
    code, data, err = run(capsys, str(capture))
    assert (code, err) == (0, [])
    assert data is not None
    assert data["protocol"] == "toy"


def test_failure_messages_combine() -> None:
    report = decode_capture(b"")
    report.found, report.key_required, report.wrong_key, report.crc_failed = 4, 1, 2, 2
    assert report.failure() == (
        "encrypted telegram: pass --key; wrong key: 2 encrypted frames did not decrypt; "
        "no frame with a valid CRC: 2 frames failed their CRC"
    )


def test_subprocess_every_sample(tmp_path: Path) -> None:
    """The real command: one capture holding every P1 sample, then a failing run."""
    assert CORPUS is not None
    capture = tmp_path / "all.txt"
    capture.write_bytes(b"".join((CORPUS / sample).read_bytes() for sample in P1_SAMPLES))
    command = [sys.executable, "-m", "custom_components.smartmeter.core.cli"]
    done = subprocess.run([*command, str(capture)], cwd=ROOT, capture_output=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b""
    data = json.loads(done.stdout, parse_float=Decimal)
    assert [frame["crc"] for frame in data["frames"]] == [expected_crc(sample) for sample in P1_SAMPLES]

    done = subprocess.run(
        [*command, "--key", WRONG_KEY, str(CORPUS / "smarty" / "lu_smarty_encrypted_frame.hex")],
        cwd=ROOT,
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.decode().splitlines() == ["decode: wrong key: 1 encrypted frame did not decrypt"]


# ---------------------------------------------------------------- every protocol

OTHER_DIRS = ("sml", "han_dlms", "mbus", "iec62056-21")
OTHER_SAMPLES = (
    sorted(
        entry["file"].split(" ")[0]
        for entry in MANIFEST.values()
        if entry["file"].split("/")[0] in OTHER_DIRS
    )
    if CORPUS
    else []
)
PROTOCOL_OF_DIR = {"sml": "sml", "han_dlms": "dlms", "mbus": "mbus", "iec62056-21": "iec62056-21"}


def manifest_verdict(sample: str) -> tuple[list[str], int]:
    """(the frames' check verdicts, exit status) the manifest's integrity note implies."""
    status = next(e for name, e in MANIFEST.items() if name.split(" ")[0] == sample)["crc"]["crc_status"]
    if "INVALID" in status and "HCS INVALID" not in status and "FCS INVALID" not in status:
        return ["invalid"], 1  # a decoded frame whose check fails (the WR5's BCC)
    if "INVALID" in status:
        return [], 1  # the HDLC frame is rejected: no frame
    if status.startswith(("n/a", "no STX", "no-crc")):
        return ["absent"], 0
    assert "valid" in status, status
    return ["valid"], 0


def test_every_protocol_has_samples() -> None:
    assert CORPUS is not None
    assert {sample.split("/")[0] for sample in OTHER_SAMPLES} == set(OTHER_DIRS)
    assert len(OTHER_SAMPLES) >= 30


@pytest.mark.parametrize("sample", OTHER_SAMPLES)
def test_decode_every_protocol_sample(capsys: pytest.CaptureFixture[str], sample: str) -> None:
    """--protocol auto picks the right protocol and gives the manifest's verdict."""
    assert CORPUS is not None
    verdicts, status = manifest_verdict(sample)
    code, data, err = run(capsys, "--protocol", "auto", str(CORPUS / sample))
    assert data is not None
    assert data["protocol"] == PROTOCOL_OF_DIR[sample.split("/", maxsplit=1)[0]]
    assert [frame["crc"] for frame in data["frames"]] == verdicts
    assert code == status
    if status:
        assert len(err) == 1
        if verdicts:
            assert err == ["decode: no frame with a valid CRC: 1 frame failed its CRC"]
        else:  # the HDLC frame failed its HCS, or lost its FCS and closing flag
            assert data["errors"] and ("HCS" in data["errors"][0] or "truncated" in data["errors"][0])
    else:
        assert err == []
        frame = data["frames"][0]
        assert frame["meters"] and frame["meters"][0]["registers"]
    # the .bin twin of a .hex sample decodes the same
    twin = (CORPUS / sample).with_suffix(".bin")
    if sample.endswith(".hex") and twin.exists():
        _, same, _ = run(capsys, str(twin))
        assert same == data


def test_protocols_listed_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    for name in ("dsmr", "sml", "dlms", "iec62056-21", "mbus"):
        assert f"{name} (" in out


def test_mixed_captures_keep_their_protocol(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Several frames of one protocol in one capture, with garbage between them."""
    assert CORPUS is not None
    sml = [(CORPUS / "sml" / name).read_bytes() for name in ("de_dzg_frame1.bin", "de_holley_frame2.bin")]
    capture = tmp_path / "sml.bin"
    capture.write_bytes(b"\x00\x01junk" + sml[0] + b"zz" + sml[1])
    code, data, _ = run(capsys, str(capture))
    assert code == 0 and data is not None
    assert data["protocol"] == "sml"
    assert [frame["crc"] for frame in data["frames"]] == ["valid", "valid"]
    assert data["discarded_bytes"] == len(b"\x00\x01junk" + b"zz")
    mbus_frames = [
        (CORPUS / "mbus" / name).read_bytes() for name in ("lgb_g350_gas.bin", "abb_delta_electricity.bin")
    ]
    capture.write_bytes(b"".join(mbus_frames))
    code, data, _ = run(capsys, "--protocol", "mbus", str(capture))
    assert code == 0 and data is not None
    assert len(data["frames"]) == 2
