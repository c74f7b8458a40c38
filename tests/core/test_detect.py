"""detect(): which meter is on a port, over real ptys.

A pty keeps the baud rate its user sets but not the parity or byte size, so
the simulated meters send only while the port runs at their rate (and garbage
otherwise); where parity matters, ``open_link`` is wrapped to record the
settings detect() asked for.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import serialx

from custom_components.smartmeter.core import detect as detect_module
from custom_components.smartmeter.core.detect import LISTEN_SETTINGS, Detection, detect
from custom_components.smartmeter.core.errors import ConnectionFailedError, NoTelegramError
from custom_components.smartmeter.core.protocols import SerialSettings
from custom_components.smartmeter.core.smarty import encrypt_frame
from custom_components.smartmeter.core.source import open_link
from tests.simulators import MBUS_SAMPLES, MbusBus, ModeCMeter, Pty, PushMeter, corpus, secondary

from .test_source import DLMS_KEY, EMH, encrypted_dlms

LISTEN = 0.25
SMARTY_KEY = bytes.fromhex("D491470F47126332B07D1923B3504188")  # published test key (corpus MANIFEST.md)


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The core needs no Home Assistant: override the suite-wide autouse fixture."""


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short timeouts for the transmitting steps."""
    monkeypatch.setattr(detect_module, "MBUS_SCAN_TIMEOUT", 0.01)
    monkeypatch.setattr(detect_module, "MBUS_READ_TIMEOUT", 0.2)
    monkeypatch.setattr(detect_module, "IEC_TIMEOUT", 0.3)


PASSIVE = [
    ("dsmr", corpus("dsmr/nl_dsmr50_iskra_mt382.txt"), 115200, "115200 8N1"),
    ("sml", corpus("sml/de_holley_frame2.bin"), 9600, "9600 8N1"),
    ("dlms", corpus("han_dlms/no_aidon_6534_list2.bin"), 2400, "2400 8E1"),
    ("iec62056-21", EMH, 9600, "9600 8N1"),  # 9600 7E1 on a real line: see the parity test
]


@pytest.mark.parametrize(("protocol", "frame", "baud", "label"), PASSIVE, ids=[p[0] for p in PASSIVE])
async def test_finds_each_push_protocol_without_transmitting(
    protocol: str, frame: bytes, baud: int, label: str
) -> None:
    async with PushMeter([frame], interval=0.02) as meter:
        meter.only_at = None
        meter.frames = []

        def at_rate() -> None:
            meter.frames = [frame] if meter.settings.baudrate == baud else [b"\xfe\x80\x00\xf8" * 8]

        meter.on_tick = at_rate
        found = await detect(meter.path, listen=LISTEN, transmit=False)
        meter.read()
        assert bytes(meter.received) == b""  # not one byte transmitted
    assert found.protocol == protocol
    assert found.settings.label == label
    assert found.frame is not None and found.frame.protocol == protocol
    assert not found.encrypted and found.error is None and found.addresses == ()


async def test_walks_the_parity_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A DSMR 2.2 meter at 9600 7E1 is found after 115200 8N1 and 9600 8N1 heard only garbage."""
    opened: list[SerialSettings] = []

    async def recording(url: str, settings: SerialSettings) -> serialx.AsyncSerial:
        opened.append(settings)
        return await open_link(url, settings)

    monkeypatch.setattr(detect_module, "open_link", recording)
    telegram = corpus("dsmr/nl_dsmr22_iskra_mt382.txt")
    async with PushMeter([telegram], interval=0.02) as meter:
        meter.on_tick = lambda: setattr(
            meter, "frames", [telegram] if opened and opened[-1].label == "9600 7E1" else [b"\x8f\x00" * 20]
        )
        found = await detect(meter.path, listen=LISTEN)
    assert opened == list(LISTEN_SETTINGS[:3])
    assert (found.protocol, found.settings) == ("dsmr", SerialSettings(9600, 7, "E", 1))
    assert found.frame is not None and found.frame.main is not None


async def test_encrypted_smarty_is_reported_as_encrypted() -> None:
    frame = corpus("smarty/lu_smarty_encrypted_frame.bin")
    async with PushMeter([frame], interval=0.02) as meter:
        found = await detect(meter.path, listen=LISTEN)
        wrong = await detect(meter.path, key=bytes(16), listen=LISTEN)
        with pytest.raises(NoTelegramError, match="bad checksum"):
            # the published frame's plaintext has a wrong CRC (MANIFEST.md)
            await detect(meter.path, key=SMARTY_KEY, listen=LISTEN)
        meter.frames = [encrypt_frame(corpus("dsmr/lu_smarty_sagemcom_oh.txt"), SMARTY_KEY)]
        right = await detect(meter.path, key=SMARTY_KEY, listen=LISTEN)
    assert found == Detection(
        "dsmr", SerialSettings(115200, 8, "N", 1), None, encrypted=True, error=found.error
    )
    assert found.error is not None and "key" in found.error
    assert wrong.encrypted and wrong.frame is None and wrong.error is not None
    assert (right.protocol, right.encrypted, right.error) == ("dsmr", True, None)
    assert right.frame is not None and right.frame.main is not None


async def test_encrypted_dlms() -> None:
    async with PushMeter([encrypted_dlms()], interval=0.02) as meter:
        locked = await detect(meter.path, listen=LISTEN)
        wrong = await detect(meter.path, key=bytes(16), listen=LISTEN)
        opened = await detect(meter.path, key=DLMS_KEY, listen=LISTEN)
    assert (locked.protocol, locked.encrypted, locked.frame) == ("dlms", True, None)
    assert locked.error is not None and "key" in locked.error
    assert (wrong.protocol, wrong.encrypted, wrong.frame) == ("dlms", True, None)
    assert opened.protocol == "dlms" and opened.encrypted
    assert opened.frame is not None and opened.frame.main is not None
    assert opened.frame.main.id == "6970631402614476"


async def test_dlms_prefers_a_frame_with_a_meter_id() -> None:
    list1 = corpus("han_dlms/no_aidon_list1.bin")
    list2 = corpus("han_dlms/no_aidon_6534_list2.bin")
    async with PushMeter([list1, list1, list2], interval=0.02) as meter:
        found = await detect(meter.path, listen=LISTEN * 2)
    assert found.frame is not None and found.frame.main is not None
    assert found.frame.main.id != "unidentified"


async def test_silent_port_says_what_was_tried() -> None:
    port = Pty()
    try:
        with pytest.raises(NoTelegramError) as err:
            await detect(port.path, listen=0.05)
        assert port.read() == b""
    finally:
        port.close()
    message = str(err.value)
    for settings in LISTEN_SETTINGS:
        assert settings.label in message
    assert "nothing received" in message


async def test_garbage_only() -> None:
    async with PushMeter([bytes(range(256))], interval=0.01) as meter:
        with pytest.raises(NoTelegramError, match="bytes received"):
            await detect(meter.path, listen=0.05)


async def test_missing_port(tmp_path: Path) -> None:
    with pytest.raises(ConnectionFailedError):
        await detect(str(tmp_path / "ttyNOPE"), listen=0.05)


@pytest.mark.usefixtures("quick")
async def test_iec_mode_c_meter_with_transmit() -> None:
    async with ModeCMeter() as meter:
        with pytest.raises(NoTelegramError):
            await detect(meter.path, listen=0.05)  # it only speaks when spoken to
        assert meter.requests == []
        found = await detect(meter.path, listen=0.05, transmit=True)
    assert meter.requests == [b"/?!\r\n"]
    assert (found.protocol, found.settings.label) == ("iec62056-21", "300 7E1")
    assert found.frame is not None and found.frame.header == "ITR5EM214"


@pytest.mark.usefixtures("quick")
async def test_mbus_slaves_on_primary_addresses() -> None:
    async with MbusBus(MBUS_SAMPLES) as bus:
        found = await detect(bus.path, listen=0.05, transmit=True)
    assert (found.protocol, found.settings.label) == ("mbus", "2400 8E1")
    assert found.addresses == ("p5", "p7", "p9")
    assert found.frame is not None
    assert found.frame.meters[0].serial_number == secondary(MBUS_SAMPLES[5])


@pytest.mark.usefixtures("quick")
async def test_mbus_slaves_sharing_primary_address_0() -> None:
    """As delivered every slave is on primary address 0: the secondary search tells them apart."""
    frames = list(MBUS_SAMPLES.values())
    async with MbusBus({0: frames[0]}) as bus:
        bus.slaves = {index: (secondary(raw), raw) for index, raw in enumerate(frames)}
        bus.primary_of = dict.fromkeys(bus.slaves, 0)
        found = await detect(bus.path, listen=0.05, transmit=True)
    assert found.protocol == "mbus"
    assert sorted(found.addresses) == sorted(secondary(raw) for raw in frames)
    assert found.frame is not None


@pytest.mark.usefixtures("quick")
async def test_nothing_answers_with_transmit() -> None:
    port = Pty()
    try:
        with pytest.raises(NoTelegramError) as err:
            await detect(port.path, listen=0.05, transmit=True)
    finally:
        port.close()
    assert "IEC 62056-21 sign-on at 300 7E1" in str(err.value)
    assert "M-Bus at 2400 8E1" in str(err.value)
