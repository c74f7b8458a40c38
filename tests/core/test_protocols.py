"""The protocol registry: every protocol frames, decodes and recognises its own corpus samples."""

from __future__ import annotations

import contextlib

import pytest

from custom_components.smartmeter.core.errors import SmartMeterError
from custom_components.smartmeter.core.p1 import DEFAULT_TZ
from custom_components.smartmeter.core.protocols import (
    PROTOCOLS,
    PUSH_PROTOCOLS,
    ProtocolInfo,
    SerialSettings,
    sniff,
)
from tests.conftest import corpus_dir

CORPUS = corpus_dir()
# One sample a protocol, as wire bytes.
SAMPLES = {
    "dsmr": (CORPUS / "dsmr" / "nl_dsmr42_kaifa.txt").read_bytes(),
    "sml": (CORPUS / "sml" / "de_dzg_frame1.bin").read_bytes(),
    "dlms": (CORPUS / "han_dlms" / "se_aidon_3ph.bin").read_bytes(),
    "iec62056-21": (CORPUS / "iec62056-21" / "de_emh_ehz_modeD_push.txt").read_bytes(),
    "mbus": (CORPUS / "mbus" / "kamstrup_382_electricity.bin").read_bytes(),
}


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The core needs no Home Assistant: override the suite-wide autouse fixture."""


def test_registry() -> None:
    assert list(PROTOCOLS) == ["sml", "mbus", "dlms", "iec62056-21", "dsmr"]
    assert list(PROTOCOLS).index("dlms") < list(PROTOCOLS).index("dsmr")
    assert list(PROTOCOLS).index("iec62056-21") < list(PROTOCOLS).index("dsmr")
    assert PUSH_PROTOCOLS == ("sml", "dlms", "iec62056-21", "dsmr")
    for name, info in PROTOCOLS.items():
        assert isinstance(info, ProtocolInfo) and info.name == name and info.description
        assert info.settings and all(isinstance(s, SerialSettings) for s in info.settings)
    assert PROTOCOLS["dsmr"].settings[0].label == "115200 8N1"
    assert PROTOCOLS["mbus"].settings[0].label == "2400 8E1"
    assert not PROTOCOLS["mbus"].push


@pytest.mark.parametrize("name", list(SAMPLES))
def test_each_protocol_frames_decodes_and_sniffs_its_sample(name: str) -> None:
    info = PROTOCOLS[name]
    raw = SAMPLES[name]
    assert sniff(raw) is info
    framer = info.framer()
    frames = framer.feed(b"\x00garbage\xff" + raw)
    frames += framer.feed(raw)  # the second copy completes a frame that waits for its successor
    assert frames and frames[0] == raw
    assert framer.discarded >= 9
    frame = info.decode(frames[0], None, DEFAULT_TZ)
    assert frame.protocol == name
    assert frame.main is not None and frame.main.registers
    framer.reset()


@pytest.mark.parametrize("name", list(SAMPLES))
def test_decoders_raise_only_smart_meter_errors(name: str) -> None:
    info = PROTOCOLS[name]
    raw = SAMPLES[name]
    for size in (0, 1, 5, len(raw) // 2, len(raw) - 1):
        with contextlib.suppress(SmartMeterError):
            info.decode(raw[:size], None, DEFAULT_TZ)


def test_other_protocols_do_not_sniff_each_other() -> None:
    for name, raw in SAMPLES.items():
        owners = [other for other, info in PROTOCOLS.items() if info.sniff(raw)]
        assert owners[0] == name, (name, owners)
