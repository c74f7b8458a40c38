"""Config flow: find the meter on a serial port, USB cable or network bridge.

The flow never asks for a protocol, baud rate or parity: it listens to the
port at the framings real meters use, recognises P1, SML, DLMS/HDLC and
IEC 62056-21 push telegrams, decodes a real frame and shows what it found
before the user confirms. Only when the user allows it does it transmit (the
IEC 62056-21 sign-on, M-Bus requests), to find meters that answer only when
asked. It asks for a key only when the frames are encrypted.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import serialx
import voluptuous as vol

from homeassistant import config_entries
from homeassistant.components import mqtt
from homeassistant.config_entries import (
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlow,
)
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import callback
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.helpers.selector import (
    BooleanSelector,
    EntitySelector,
    EntitySelectorConfig,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectOptionDict,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
from homeassistant.helpers.service_info.mqtt import MqttServiceInfo
from homeassistant.helpers.service_info.usb import UsbServiceInfo
from homeassistant.util import dt as dt_util

from . import const
from .cloud import make_client, meter_name, statistic_register
from .cloud_statistics import cloud_statistic_id
from .const import (
    CLOUD_PROTOCOLS,
    CONF_ACCOUNT,
    CONF_ADDRESSES,
    CONF_API_KEY,
    CONF_BACKFILL_DAYS,
    CONF_BASE_TOPIC,
    CONF_BAUDRATE,
    CONF_BURST_FLOW,
    CONF_BURST_MINUTES,
    CONF_BYTESIZE,
    CONF_CALORIFIC_VALUE,
    CONF_COUNTER_INTERVAL,
    CONF_DEADBAND,
    CONF_DEVICES,
    CONF_ENTITIES,
    CONF_GAS_UNIT,
    CONF_HIGH_DAY_FACTOR,
    CONF_KEY,
    CONF_LEAK_REPAIR_HOURS,
    CONF_LIVE,
    CONF_MAX_GAS_FLOW,
    CONF_MAX_POWER,
    CONF_MAX_WATER_FLOW,
    CONF_MEASUREMENT_INTERVAL,
    CONF_METER_ID,
    CONF_METERS,
    CONF_NAMES,
    CONF_OUTAGE_TIMEOUT,
    CONF_PARITY,
    CONF_POLL_INTERVAL,
    CONF_PROTOCOL,
    CONF_READOUT,
    CONF_RESTATE_DAYS,
    CONF_STALE_HOURS,
    CONF_STOPBITS,
    CONF_TIME_ZONE,
    CONF_TOKEN,
    CONF_TOPIC,
    CONF_TRANSMIT,
    CONF_URL,
    CONF_WATER_QUIET,
    DEFAULT_BACKFILL_DAYS,
    DEFAULT_BURST_FLOW,
    DEFAULT_BURST_MINUTES,
    DEFAULT_CALORIFIC_VALUE,
    DEFAULT_CLOUD_LIVE,
    DEFAULT_COUNTER_INTERVAL,
    DEFAULT_DEADBAND,
    DEFAULT_GAS_UNIT,
    DEFAULT_HIGH_DAY_FACTOR,
    DEFAULT_LEAK_REPAIR_HOURS,
    DEFAULT_LIVE,
    DEFAULT_MAX_GAS_FLOW,
    DEFAULT_MAX_POWER,
    DEFAULT_MAX_WATER_FLOW,
    DEFAULT_MEASUREMENT_INTERVAL,
    DEFAULT_OUTAGE_TIMEOUT,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_RESTATE_DAYS,
    DEFAULT_STALE_HOURS,
    DEFAULT_WATER_QUIET,
    DOMAIN,
    LOGGER,
    PROTOCOL_ENTITY,
    PROTOCOL_IEC,
    PROTOCOL_MBUS,
    PROTOCOL_NAMES,
    PROTOCOL_OCTOPUS,
    PROTOCOL_PLANNER,
    PROTOCOL_TIBBER,
    PROTOCOL_WMBUS,
    PROTOCOL_Z2M,
)
from .core.cloud.base import (
    CloudAccount,
    CloudAuthError,
    CloudError,
    CloudRateLimitError,
    CloudTemporaryError,
)
from .core.detect import Detection, detect
from .core.errors import ConnectionFailedError, DecodeError, NoTelegramError
from .core.models import Frame, Integrity, Medium, Meter
from .core.ports import port_label, serial_by_id
from .core.protocols import IEC_READOUT_SETTINGS
from .core.smarty import parse_key
from .core.wmbusmeters import decode_wmbusmeters
from .core.zigbee2mqtt import MAX_PAYLOAD, Z2MDevice
from .entity import MEDIUM_NAMES
from .entity_source import describe
from .mqtt_source import (
    DEFAULT_WMBUS_TOPIC,
    DEFAULT_Z2M_BASE,
    MAX_DEVICE_LIST,
    async_listen_wmbus,
    async_listen_z2m,
    parse_device_list,
)
from .planner_flow import PlannerFlowMixin, async_planner_options

CONF_DEVICE = "device"
CONF_TRANSPORT = "transport"
TRANSPORTS = ("socket", "rfc2217")

# Registers shown as a sample of what was found.
_SAMPLE_KEYS = (
    "energy_import_total",
    "energy_import_tariff_1",
    "energy_import_tariff_2",
    "energy_export_tariff_1",
    "power_import",
    "gas",
    "water",
    "heat",
)


def _sample(frame: Frame) -> str:
    lines = [
        f"{reg.key.replace('_', ' ')}: {reg.value} {reg.unit or ''}".rstrip()
        for meter in frame.meters
        for reg in meter.registers
        if reg.key in _SAMPLE_KEYS and isinstance(reg.value, Decimal)
    ]
    return ", ".join(lines[:6]) or "-"


def _title(frame: Frame) -> str:
    main = frame.main
    assert main is not None  # a decoded frame always has a main meter
    # A P1 meter's printed serial number; other protocols' IDs are the printed ones.
    name = main.serial_number if frame.protocol == "dsmr" and main.serial_number else main.id
    return f"{MEDIUM_NAMES[main.medium]} {name}"


def _z2m_label(device: Z2MDevice) -> str:
    """How a Zigbee2MQTT device is offered: its name, what it is and what it measures."""
    what = " ".join(part for part in (device.vendor, device.model) if part)
    medium = MEDIUM_NAMES[device.medium] if device.medium is not Medium.UNKNOWN else None
    details = ", ".join(part for part in (what, medium, device.ieee) if part)
    return f"{device.friendly_name} ({details})"


def _wmbus_label(frame: Frame) -> str:
    """How a wmbusmeters meter is offered: its ID, medium, driver and a sample reading."""
    main = frame.main
    assert main is not None
    medium = MEDIUM_NAMES[main.medium] if main.medium is not Medium.UNKNOWN else None
    sample = _sample(frame) if frame.meters[0].registers else None
    details = ", ".join(part for part in (medium, main.model, sample) if part and part != "-")
    return f"{main.id} ({details})"


def _valid_topic(topic: str, *, wildcards: bool) -> bool:
    """Whether ``topic`` can be subscribed (a base topic takes no wildcard)."""
    try:
        mqtt.valid_subscribe_topic(topic)
    except vol.Invalid:
        return False
    return wildcards or not any(char in topic for char in "+#")


def _valid_time_zone(zone: str) -> bool:
    """Whether ``zone`` names an IANA time zone (a path-like name is not one)."""
    try:
        return dt_util.get_time_zone(zone) is not None
    except ValueError:
        return False


class SmartMeterConfigFlow(PlannerFlowMixin, ConfigFlow, domain=DOMAIN):
    """Set up a meter."""

    VERSION = 1

    def __init__(self) -> None:
        """Start with nothing found."""
        self._url: str | None = None
        self._key: str | None = None
        self._result: Detection | None = None
        self._transmit = False
        # MQTT: the Zigbee2MQTT base topic and its metering devices, or the
        # wmbusmeters topic and the meters heard on it.
        self._topic = ""
        self._z2m_devices: dict[str, Z2MDevice] = {}
        self._wmbus_meters: dict[str, Frame] = {}
        # Cloud: the credentials and the account they open.
        self._cloud_data: dict[str, Any] = {}
        self._account: CloudAccount | None = None
        # The planner's answers so far.
        self._planner: dict[str, Any] = {}

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> SmartMeterOptionsFlow:
        """Options of an entry."""
        return SmartMeterOptionsFlow()

    async def _async_probe(self, url: str, key: str | None, transmit: bool = False) -> Detection:
        """Find the meter on ``url``; errors as exceptions the steps map to messages."""
        return await detect(
            url,
            key=parse_key(key) if key else None,
            tz=dt_util.get_default_time_zone(),
            transmit=transmit,
            listen=const.PROBE_TIMEOUT,
        )

    async def _async_try(
        self, url: str, key: str | None, errors: dict[str, str], transmit: bool = False
    ) -> Detection | None:
        try:
            result = await self._async_probe(url, key, transmit)
        except ValueError:
            errors[CONF_KEY] = "invalid_key_format"
        except ConnectionFailedError as err:
            LOGGER.debug("Cannot open %s: %s", serialx.redact_uri(url), err)
            errors["base"] = "cannot_connect"
        except NoTelegramError as err:
            LOGGER.debug("No telegram on %s: %s", serialx.redact_uri(url), err)
            errors["base"] = "no_telegram"
        else:
            if result.encrypted and result.frame is None and key:
                errors[CONF_KEY] = "invalid_key"
                return None
            return result
        return None

    # ---- user ----

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask how the meter is connected."""
        return self.async_show_menu(
            step_id="user",
            menu_options=[
                "serial",
                "network",
                "zigbee2mqtt",
                "wmbusmeters",
                "zha",
                "entity",
                "octopus",
                "tibber",
                "planner",
            ],
        )

    async def _async_port_options(self) -> list[SelectOptionDict]:
        ports = await serialx.async_list_serial_ports()
        options: list[SelectOptionDict] = []
        for port in ports:
            path = await self.hass.async_add_executor_job(serial_by_id, port.device)
            label = port_label(port)
            options.append(SelectOptionDict(value=path, label=label))
        return options

    async def async_step_serial(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Pick a serial port (or type a path or serialx URL)."""
        errors: dict[str, str] = {}
        if user_input is not None:
            url = user_input[CONF_DEVICE]
            if url.startswith("/dev/"):
                url = await self.hass.async_add_executor_job(serial_by_id, url)
            self._transmit = bool(user_input.get(CONF_TRANSMIT, False))
            result = await self._async_try(url, None, errors, self._transmit)
            if result is not None:
                return await self._async_found(url, result)
        return self.async_show_form(
            step_id="serial",
            data_schema=self.add_suggested_values_to_schema(
                vol.Schema(
                    {
                        vol.Required(CONF_DEVICE): SelectSelector(
                            SelectSelectorConfig(
                                options=await self._async_port_options(),
                                custom_value=True,
                                mode=SelectSelectorMode.DROPDOWN,
                            )
                        ),
                        vol.Optional(CONF_TRANSMIT, default=False): BooleanSelector(),
                    }
                ),
                user_input,
            ),
            errors=errors,
        )

    async def async_step_network(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """A network P1 dongle or ser2net bridge."""
        errors: dict[str, str] = {}
        if user_input is not None:
            host = user_input[CONF_HOST].strip()
            if ":" in host and not host.startswith("["):
                host = f"[{host}]"  # IPv6 literal
            url = f"{user_input[CONF_TRANSPORT]}://{host}:{user_input[CONF_PORT]}"
            self._transmit = bool(user_input.get(CONF_TRANSMIT, False))
            result = await self._async_try(url, None, errors, self._transmit)
            if result is not None:
                return await self._async_found(url, result)
        return self.async_show_form(
            step_id="network",
            data_schema=self.add_suggested_values_to_schema(
                vol.Schema(
                    {
                        vol.Required(CONF_HOST): TextSelector(),
                        vol.Required(CONF_PORT, default=23): vol.All(vol.Coerce(int), vol.Range(1, 65535)),
                        vol.Required(CONF_TRANSPORT, default="socket"): SelectSelector(
                            SelectSelectorConfig(
                                options=list(TRANSPORTS),
                                translation_key=CONF_TRANSPORT,
                                mode=SelectSelectorMode.LIST,
                            )
                        ),
                        vol.Optional(CONF_TRANSMIT, default=False): BooleanSelector(),
                    }
                ),
                user_input,
            ),
            errors=errors,
        )

    async def _async_found(self, url: str, result: Detection) -> ConfigFlowResult:
        """A port answered: ask for a key if needed, else identify the meter."""
        self._url = url
        self._result = result
        if result.frame is None:
            return await self.async_step_key()
        return await self._async_identified()

    async def async_step_key(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """The telegrams are encrypted: ask for the meter's key."""
        assert self._url is not None
        errors: dict[str, str] = {}
        if user_input is not None:
            key = user_input[CONF_KEY].strip()
            result = await self._async_try(self._url, key, errors, self._transmit)
            if result is not None and result.frame is not None:
                self._key = key
                self._result = result
                return await self._async_identified()
        return self.async_show_form(
            step_id="key",
            data_schema=vol.Schema(
                {vol.Required(CONF_KEY): TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))}
            ),
            errors=errors,
        )

    async def _async_identified(self) -> ConfigFlowResult:
        assert self._result is not None and self._result.frame is not None and self._url is not None
        main = self._result.frame.main
        assert main is not None
        await self.async_set_unique_id(main.id)
        self._abort_if_unique_id_configured(updates=self._entry_data())
        return await self.async_step_confirm()

    def _entry_data(self) -> dict[str, Any]:
        assert self._result is not None and self._url is not None
        frame = self._result.frame
        assert frame is not None and frame.main is not None
        settings = self._result.settings
        data: dict[str, Any] = {
            CONF_URL: self._url,
            CONF_PROTOCOL: self._result.protocol,
            CONF_BAUDRATE: settings.baudrate,
            CONF_BYTESIZE: settings.bytesize,
            CONF_PARITY: settings.parity,
            CONF_STOPBITS: settings.stopbits,
            CONF_KEY: self._key,
            CONF_METER_ID: frame.main.id,
        }
        if self._result.protocol == PROTOCOL_MBUS:
            data[CONF_ADDRESSES] = list(self._result.addresses)
        if self._result.protocol == PROTOCOL_IEC and settings == IEC_READOUT_SETTINGS:
            data[CONF_READOUT] = True  # found by the sign-on: it answers only when asked
        return data

    async def async_step_confirm(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Show what was found; create the entry when the user agrees."""
        assert self._result is not None and self._result.frame is not None and self._url is not None
        frame = self._result.frame
        if user_input is not None:
            return self.async_create_entry(title=_title(frame), data=self._entry_data())
        self._set_confirm_only()
        main = frame.main
        assert main is not None
        return self.async_show_form(
            step_id="confirm",
            description_placeholders={
                "title": _title(frame),
                "protocol": PROTOCOL_NAMES.get(self._result.protocol, self._result.protocol),
                "port": serialx.redact_uri(self._url),
                "settings": self._result.settings.label,
                "meters": str(
                    len(frame.meters)
                    if self._result.protocol != PROTOCOL_MBUS
                    else len(self._result.addresses)
                ),
                "sample": _sample(frame),
                "version": frame.version or "-",
            },
        )

    # ---- MQTT: Zigbee2MQTT and wmbusmeters ----

    async def async_step_zigbee2mqtt(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask for Zigbee2MQTT's base topic, then read its device list."""
        if not await mqtt.async_wait_for_mqtt_client(self.hass):
            return self.async_abort(reason="mqtt_not_configured")
        errors: dict[str, str] = {}
        if user_input is not None:
            base = user_input[CONF_BASE_TOPIC].strip().strip("/")
            if not _valid_topic(base, wildcards=False):
                errors[CONF_BASE_TOPIC] = "invalid_topic"
            else:
                # A discovery flow for the same topic may be waiting: this one goes on.
                await self.async_set_unique_id(f"{PROTOCOL_Z2M}:{base}", raise_on_progress=False)
                self._abort_if_unique_id_configured()
                devices = await async_listen_z2m(self.hass, base, const.Z2M_LISTEN_TIMEOUT)
                if devices is None:
                    errors["base"] = "no_device_list"
                elif not devices:
                    errors["base"] = "no_devices"
                else:
                    self._topic = base
                    self._z2m_devices = {device.ieee: device for device in devices}
                    return await self.async_step_z2m_select()
        return self.async_show_form(
            step_id="zigbee2mqtt",
            data_schema=self.add_suggested_values_to_schema(
                vol.Schema({vol.Required(CONF_BASE_TOPIC, default=DEFAULT_Z2M_BASE): TextSelector()}),
                user_input,
            ),
            errors=errors,
        )

    def _z2m_schema(self, selected: list[str]) -> vol.Schema:
        options = [
            SelectOptionDict(value=ieee, label=_z2m_label(device))
            for ieee, device in sorted(self._z2m_devices.items(), key=lambda item: item[1].friendly_name)
        ]
        return self.add_suggested_values_to_schema(
            vol.Schema(
                {
                    vol.Required(CONF_DEVICES): SelectSelector(
                        SelectSelectorConfig(options=options, multiple=True, mode=SelectSelectorMode.LIST)
                    )
                }
            ),
            {CONF_DEVICES: selected},
        )

    def _z2m_data(self, selected: list[str]) -> dict[str, Any]:
        return {
            CONF_PROTOCOL: PROTOCOL_Z2M,
            CONF_BASE_TOPIC: self._topic,
            CONF_DEVICES: selected,
            CONF_NAMES: {
                ieee: self._z2m_devices[ieee].friendly_name for ieee in selected if ieee in self._z2m_devices
            },
        }

    async def async_step_z2m_select(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """List the metering devices Zigbee2MQTT knows; the user picks which to add."""
        errors: dict[str, str] = {}
        if user_input is not None:
            selected = list(user_input.get(CONF_DEVICES) or [])
            if selected:
                return self.async_create_entry(
                    title=f"Zigbee2MQTT ({self._topic})", data=self._z2m_data(selected)
                )
            errors["base"] = "nothing_selected"
        return self.async_show_form(
            step_id="z2m_select",
            data_schema=self._z2m_schema(list(self._z2m_devices)),
            description_placeholders={"topic": self._topic, "count": str(len(self._z2m_devices))},
            errors=errors,
        )

    # ---- existing entities: ZHA meters and any cumulative sensor ----

    @callback
    def _zha_meters(self) -> list[SelectOptionDict]:
        """ZHA Smart Energy Metering summation sensors (energy, gas, water), labelled by device."""
        registry = er.async_get(self.hass)
        devices = dr.async_get(self.hass)
        options: list[SelectOptionDict] = []
        for entry in registry.entities.values():
            if entry.platform != "zha" or entry.domain != "sensor" or entry.disabled_by is not None:
                continue
            state = self.hass.states.get(entry.entity_id)
            if state is None or state.attributes.get("state_class") != "total_increasing":
                continue
            if describe(state) is None:
                continue
            device = devices.async_get(entry.device_id) if entry.device_id else None
            name = (device.name_by_user or device.name) if device is not None else None
            label = f"{name}: {state.name}" if name else state.name
            options.append(SelectOptionDict(value=entry.entity_id, label=label))
        return sorted(options, key=lambda option: option["label"])

    async def async_step_zha(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Pick ZHA meters: each summation sensor, with its device's demand sensor, becomes a meter."""
        options = self._zha_meters()
        if not options:
            return self.async_abort(reason="no_zha_meters")
        if user_input is not None:
            chosen: list[str] = list(user_input[CONF_ENTITIES])
            # The instantaneous demand of the same device comes along.
            registry = er.async_get(self.hass)
            devices = {
                entry.device_id for e in chosen if (entry := registry.async_get(e)) and entry.device_id
            }
            for entry in registry.entities.values():
                state = self.hass.states.get(entry.entity_id)
                if (
                    entry.platform == "zha"
                    and entry.device_id in devices
                    and entry.entity_id not in chosen
                    and state is not None
                    and (found := describe(state)) is not None
                    and found[0] == "power_import"
                ):
                    chosen.append(entry.entity_id)
            return await self._async_entities_entry(chosen, "ZHA meters")
        return self.async_show_form(
            step_id="zha",
            data_schema=vol.Schema(
                {
                    vol.Required(CONF_ENTITIES): SelectSelector(
                        SelectSelectorConfig(options=options, multiple=True, mode=SelectSelectorMode.LIST)
                    )
                }
            ),
        )

    async def async_step_entity(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Pick any existing energy, gas, water (and power) sensors to follow as meters."""
        errors: dict[str, str] = {}
        if user_input is not None:
            chosen = list(user_input[CONF_ENTITIES])
            unusable = [
                entity_id
                for entity_id in chosen
                if (state := self.hass.states.get(entity_id)) is None or describe(state) is None
            ]
            if unusable:
                errors[CONF_ENTITIES] = "not_a_meter_entity"
            else:
                return await self._async_entities_entry(chosen, "Meters from entities")
        return self.async_show_form(
            step_id="entity",
            data_schema=self.add_suggested_values_to_schema(
                vol.Schema(
                    {
                        vol.Required(CONF_ENTITIES): EntitySelector(
                            EntitySelectorConfig(
                                domain="sensor",
                                device_class=["energy", "gas", "water", "power"],
                                multiple=True,
                            )
                        )
                    }
                ),
                user_input,
            ),
            errors=errors,
        )

    async def _async_entities_entry(self, chosen: list[str], title: str) -> ConfigFlowResult:
        entities = sorted(set(chosen))
        await self.async_set_unique_id(f"{PROTOCOL_ENTITY}:{','.join(entities)}")
        self._abort_if_unique_id_configured()
        names = [state.name for entity_id in entities if (state := self.hass.states.get(entity_id))]
        if len(names) == 1:
            title = names[0]
        return self.async_create_entry(
            title=title, data={CONF_PROTOCOL: PROTOCOL_ENTITY, CONF_ENTITIES: entities}
        )

    async def async_step_wmbusmeters(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask for wmbusmeters' MQTT topic, then listen for telegrams."""
        if not await mqtt.async_wait_for_mqtt_client(self.hass):
            return self.async_abort(reason="mqtt_not_configured")
        errors: dict[str, str] = {}
        if user_input is not None:
            topic = user_input[CONF_TOPIC].strip()
            if not _valid_topic(topic, wildcards=True):
                errors[CONF_TOPIC] = "invalid_topic"
            else:
                await self.async_set_unique_id(f"{PROTOCOL_WMBUS}:{topic}", raise_on_progress=False)
                self._abort_if_unique_id_configured()
                meters = await async_listen_wmbus(self.hass, topic, const.WMBUS_LISTEN_TIMEOUT)
                if not meters:
                    errors["base"] = "no_meters"
                else:
                    self._topic = topic
                    self._wmbus_meters = meters
                    return await self.async_step_wmbus_select()
        return self.async_show_form(
            step_id="wmbusmeters",
            data_schema=self.add_suggested_values_to_schema(
                vol.Schema({vol.Required(CONF_TOPIC, default=DEFAULT_WMBUS_TOPIC): TextSelector()}),
                user_input,
            ),
            description_placeholders={"seconds": f"{const.WMBUS_LISTEN_TIMEOUT:.0f}"},
            errors=errors,
        )

    def _wmbus_schema(self, selected: list[str]) -> vol.Schema:
        options = [
            SelectOptionDict(value=meter_id, label=_wmbus_label(frame))
            for meter_id, frame in sorted(self._wmbus_meters.items())
        ]
        return self.add_suggested_values_to_schema(
            vol.Schema(
                {
                    vol.Required(CONF_METERS): SelectSelector(
                        SelectSelectorConfig(options=options, multiple=True, mode=SelectSelectorMode.LIST)
                    )
                }
            ),
            {CONF_METERS: selected},
        )

    async def async_step_wmbus_select(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """List the meters heard; the user picks which to add (a neighbour's meter is heard too)."""
        errors: dict[str, str] = {}
        if user_input is not None:
            selected = list(user_input.get(CONF_METERS) or [])
            if selected:
                return self.async_create_entry(
                    title=f"wmbusmeters ({self._topic})",
                    data={CONF_PROTOCOL: PROTOCOL_WMBUS, CONF_TOPIC: self._topic, CONF_METERS: selected},
                )
            errors["base"] = "nothing_selected"
        return self.async_show_form(
            step_id="wmbus_select",
            data_schema=self._wmbus_schema([]),
            description_placeholders={"topic": self._topic, "count": str(len(self._wmbus_meters))},
            errors=errors,
        )

    async def async_step_mqtt(self, discovery_info: MqttServiceInfo) -> ConfigFlowResult:
        """Zigbee2MQTT's device list or a wmbusmeters telegram was seen on the broker."""
        if not await mqtt.async_wait_for_mqtt_client(self.hass):
            return self.async_abort(reason="mqtt_not_configured")
        topic = discovery_info.topic
        payload = discovery_info.payload
        if isinstance(payload, bytearray):
            payload = bytes(payload)
        if topic.endswith("/bridge/devices"):
            base = topic.removesuffix("/bridge/devices")
            await self.async_set_unique_id(f"{PROTOCOL_Z2M}:{base}")
            self._abort_if_unique_id_configured()
            if not payload or len(payload) > MAX_DEVICE_LIST:
                return self.async_abort(reason="invalid_discovery_info")
            try:
                devices = parse_device_list(payload)
            except DecodeError as err:
                LOGGER.debug("Ignored device list on %s: %s", topic, err)
                return self.async_abort(reason="invalid_discovery_info")
            if not devices:
                return self.async_abort(reason="no_devices")
            self._topic = base
            self._z2m_devices = {device.ieee: device for device in devices}
            self.context["title_placeholders"] = {"name": f"Zigbee2MQTT ({base})"}
            return await self.async_step_z2m_select()
        # wmbusmeters: one telegram; listen a little longer for the other meters.
        subscribed = discovery_info.subscribed_topic
        await self.async_set_unique_id(f"{PROTOCOL_WMBUS}:{subscribed}")
        self._abort_if_unique_id_configured()
        if not payload or len(payload) > MAX_PAYLOAD:
            return self.async_abort(reason="invalid_discovery_info")
        try:
            frame = decode_wmbusmeters(payload)
        except DecodeError as err:
            LOGGER.debug("Ignored telegram on %s: %s", topic, err)
            return self.async_abort(reason="invalid_discovery_info")
        if frame.main is None:
            return self.async_abort(reason="invalid_discovery_info")
        self._topic = subscribed
        self._wmbus_meters = {frame.main.id: frame}
        self._wmbus_meters |= await async_listen_wmbus(self.hass, subscribed, const.WMBUS_LISTEN_TIMEOUT)
        self.context["title_placeholders"] = {"name": f"wmbusmeters ({subscribed})"}
        return await self.async_step_wmbus_select()

    async def async_step_reconfigure_mqtt(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Change which Zigbee2MQTT devices or wmbusmeters meters an MQTT entry follows."""
        entry = self._get_reconfigure_entry()
        z2m = entry.data[CONF_PROTOCOL] == PROTOCOL_Z2M
        key = CONF_DEVICES if z2m else CONF_METERS
        current = list(entry.data.get(key, []))
        errors: dict[str, str] = {}
        if user_input is not None:
            selected = list(user_input.get(key) or [])
            if not selected:
                errors["base"] = "nothing_selected"
            elif z2m:
                known = dict(entry.data.get(CONF_NAMES, {}))
                data = self._z2m_data(selected)
                kept = {ieee: known[ieee] for ieee in selected if ieee in known}
                data[CONF_NAMES] = kept | data[CONF_NAMES]
                return self.async_update_reload_and_abort(entry, data_updates=data)
            else:
                return self.async_update_reload_and_abort(entry, data_updates={CONF_METERS: selected})
        elif z2m:
            self._topic = entry.data[CONF_BASE_TOPIC]
            devices = await async_listen_z2m(self.hass, self._topic, const.Z2M_LISTEN_TIMEOUT)
            self._z2m_devices = {device.ieee: device for device in devices or []}
        else:
            self._topic = entry.data[CONF_TOPIC]
            self._wmbus_meters = await async_listen_wmbus(self.hass, self._topic, const.WMBUS_LISTEN_TIMEOUT)
        if z2m:
            names = entry.data.get(CONF_NAMES, {})
            for ieee in current:  # a selected device not listed now stays selectable
                if ieee not in self._z2m_devices:
                    self._z2m_devices[ieee] = Z2MDevice(
                        ieee, names.get(ieee, ieee), None, None, None, Medium.UNKNOWN, ()
                    )
            schema = self._z2m_schema(current)
        else:
            for meter_id in current:
                if meter_id not in self._wmbus_meters:
                    self._wmbus_meters[meter_id] = Frame(
                        PROTOCOL_WMBUS, Integrity.ABSENT, (Meter(meter_id, Medium.UNKNOWN),)
                    )
            schema = self._wmbus_schema(current)
        return self.async_show_form(
            step_id="reconfigure_mqtt",
            data_schema=schema,
            description_placeholders={"topic": self._topic},
            errors=errors,
        )

    # ---- USB discovery ----

    async def async_step_usb(self, discovery_info: UsbServiceInfo) -> ConfigFlowResult:
        """A known P1 cable was plugged in: confirm it carries telegrams before asking."""
        url = await self.hass.async_add_executor_job(serial_by_id, discovery_info.device)
        for entry in self._async_current_entries(include_ignore=False):
            if entry.data.get(CONF_URL) in (url, discovery_info.device):
                return self.async_abort(reason="already_configured")
        await self.async_set_unique_id(
            f"usb_{discovery_info.vid}_{discovery_info.pid}_{discovery_info.serial_number}"
        )
        self._abort_if_unique_id_configured()
        self.context["title_placeholders"] = {"name": discovery_info.description or url}
        self._url = url
        try:
            result = await self._async_probe(url, None)
        except ConnectionFailedError:
            return self.async_abort(reason="cannot_connect")
        except NoTelegramError:
            # Nothing pushes on this port: an optical head on a meter that
            # answers only when asked, or an M-Bus master. Ask before sending.
            return await self.async_step_usb_transmit()
        return await self._async_found(url, result)

    async def async_step_usb_transmit(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask the user's consent to send the IEC 62056-21 sign-on and M-Bus requests on a quiet port."""
        assert self._url is not None
        errors: dict[str, str] = {}
        if user_input is not None:
            self._transmit = True
            result = await self._async_try(self._url, None, errors, transmit=True)
            if result is not None:
                return await self._async_found(self._url, result)
            if errors.get("base") == "no_telegram":
                return self.async_abort(reason="not_p1_meter")
        return self.async_show_form(
            step_id="usb_transmit",
            description_placeholders={"port": self._url},
            errors=errors,
        )

    # ---- cloud accounts (Octopus Energy, Tibber) ----

    async def _async_account(self, data: dict[str, Any], errors: dict[str, str]) -> CloudAccount | None:
        """The account the credentials open, with at least one meter; errors as form messages."""
        try:
            account = await make_client(self.hass, data).async_account()
        except CloudAuthError:
            errors["base"] = "invalid_auth"
        except CloudRateLimitError:
            errors["base"] = "rate_limited"
        except CloudTemporaryError as err:
            LOGGER.debug("Cloud account check failed: %s", err)
            errors["base"] = "cannot_connect"
        except CloudError as err:
            LOGGER.debug("Cloud account check failed: %s", err)
            errors["base"] = "invalid_response"
        else:
            if account.meters:
                return account
            errors["base"] = "no_meters"
        return None

    @staticmethod
    def _cloud_schema(protocol: str, account_number: str | None = None) -> vol.Schema:
        secret = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))
        if protocol == PROTOCOL_TIBBER:
            return vol.Schema({vol.Required(CONF_TOKEN): secret})
        return vol.Schema(
            {
                vol.Required(CONF_API_KEY): secret,
                vol.Required(CONF_ACCOUNT, default=account_number or vol.UNDEFINED): TextSelector(),
            }
        )

    @staticmethod
    def _cloud_input(protocol: str, user_input: dict[str, Any]) -> dict[str, Any]:
        if protocol == PROTOCOL_TIBBER:
            return {CONF_PROTOCOL: protocol, CONF_TOKEN: user_input[CONF_TOKEN].strip()}
        return {
            CONF_PROTOCOL: protocol,
            CONF_API_KEY: user_input[CONF_API_KEY].strip(),
            CONF_ACCOUNT: user_input[CONF_ACCOUNT].strip().upper(),
        }

    async def _async_cloud_step(self, protocol: str, user_input: dict[str, Any] | None) -> ConfigFlowResult:
        errors: dict[str, str] = {}
        if user_input is not None:
            data = self._cloud_input(protocol, user_input)
            account = await self._async_account(data, errors)
            if account is not None:
                await self.async_set_unique_id(f"{protocol}_{account.id}")
                self._abort_if_unique_id_configured()
                self._cloud_data, self._account = data, account
                return await self.async_step_cloud_confirm()
        return self.async_show_form(step_id=protocol, data_schema=self._cloud_schema(protocol), errors=errors)

    async def async_step_octopus(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """An Octopus Energy account: API key and account number."""
        return await self._async_cloud_step(PROTOCOL_OCTOPUS, user_input)

    async def async_step_tibber(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """A Tibber account: personal access token."""
        return await self._async_cloud_step(PROTOCOL_TIBBER, user_input)

    async def async_step_cloud_confirm(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Show the meters found and the statistics they will feed."""
        account = self._account
        assert account is not None
        provider = PROTOCOL_NAMES[self._cloud_data[CONF_PROTOCOL]]
        if user_input is not None:
            return self.async_create_entry(
                title=f"{provider} {account.name or account.id}", data=self._cloud_data
            )
        lines = []
        for meter in account.meters:
            stats = ", ".join(
                cloud_statistic_id(meter.provider, meter.id, statistic_register(meter, r))
                for r in meter.registers
            )
            lines.append(
                f"- {meter_name(meter)}" + (f" ({meter.tariff})" if meter.tariff else "") + f": {stats}"
            )
        return self.async_show_form(
            step_id="cloud_confirm",
            description_placeholders={"provider": provider, "meters": "\n".join(lines)},
        )

    async def _async_cloud_credentials(
        self, step_id: str, entry: ConfigEntry, user_input: dict[str, Any] | None
    ) -> ConfigFlowResult:
        """New credentials for an existing cloud entry (reauth, reconfigure): the same account only."""
        protocol = entry.data[CONF_PROTOCOL]
        errors: dict[str, str] = {}
        if user_input is not None:
            data = self._cloud_input(protocol, {CONF_ACCOUNT: entry.data.get(CONF_ACCOUNT, "")} | user_input)
            account = await self._async_account(data, errors)
            if account is not None:
                await self.async_set_unique_id(f"{protocol}_{account.id}")
                self._abort_if_unique_id_mismatch(reason="wrong_account")
                return self.async_update_reload_and_abort(entry, data_updates=data)
        return self.async_show_form(
            step_id=step_id,
            data_schema=self._cloud_schema(protocol, entry.data.get(CONF_ACCOUNT)),
            description_placeholders={"provider": PROTOCOL_NAMES[protocol], "title": entry.title},
            errors=errors,
        )

    async def async_step_reauth_cloud(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """The provider refused the stored key or token: ask for a new one."""
        return await self._async_cloud_credentials("reauth_cloud", self._get_reauth_entry(), user_input)

    async def async_step_reconfigure_cloud(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change a cloud account's key or token."""
        return await self._async_cloud_credentials(
            "reconfigure_cloud", self._get_reconfigure_entry(), user_input
        )

    # ---- reconfigure: change the port without losing entities ----

    async def async_step_reconfigure(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Move the meter to another port or bridge; MQTT entries: change the selection."""
        entry = self._get_reconfigure_entry()
        if entry.data.get(CONF_PROTOCOL) in (PROTOCOL_Z2M, PROTOCOL_WMBUS):
            return await self.async_step_reconfigure_mqtt()
        if entry.data.get(CONF_PROTOCOL) in CLOUD_PROTOCOLS:
            return await self.async_step_reconfigure_cloud()
        errors: dict[str, str] = {}
        if user_input is not None:
            url = user_input[CONF_DEVICE].strip()
            if url.startswith("/dev/"):
                url = await self.hass.async_add_executor_job(serial_by_id, url)
            key = entry.data.get(CONF_KEY)
            polled = entry.data.get(CONF_PROTOCOL) == PROTOCOL_MBUS or bool(entry.data.get(CONF_READOUT))
            result = await self._async_try(url, key, errors, transmit=polled)
            if errors.pop(CONF_KEY, None) is not None or (result is not None and result.frame is None):
                # The form has no key field: the stored key does not open these telegrams.
                errors["base"] = "invalid_key"
            elif result is not None and result.frame is not None:
                main = result.frame.main
                assert main is not None
                await self.async_set_unique_id(main.id)
                self._abort_if_unique_id_mismatch(reason="wrong_meter")
                settings = result.settings
                return self.async_update_reload_and_abort(
                    entry,
                    data_updates={
                        CONF_URL: url,
                        CONF_BAUDRATE: settings.baudrate,
                        CONF_BYTESIZE: settings.bytesize,
                        CONF_PARITY: settings.parity,
                        CONF_STOPBITS: settings.stopbits,
                    },
                )
        options = await self._async_port_options()
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                vol.Schema(
                    {
                        vol.Required(CONF_DEVICE): SelectSelector(
                            SelectSelectorConfig(
                                options=options, custom_value=True, mode=SelectSelectorMode.DROPDOWN
                            )
                        )
                    }
                ),
                {CONF_DEVICE: entry.data[CONF_URL]},
            ),
            errors=errors,
        )

    # ---- reauth: the key changed or is wrong ----

    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        """The meter's telegrams do not decrypt with the stored key; a cloud account refused its key."""
        if entry_data.get(CONF_PROTOCOL) in CLOUD_PROTOCOLS:
            return await self.async_step_reauth_cloud()
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask for the new key and check it against a live telegram."""
        entry = self._get_reauth_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            key = user_input[CONF_KEY].strip()
            result = await self._async_try(entry.data[CONF_URL], key, errors)
            if result is not None and result.frame is not None:
                return self.async_update_reload_and_abort(entry, data_updates={CONF_KEY: key})
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=vol.Schema(
                {vol.Required(CONF_KEY): TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))}
            ),
            description_placeholders={"port": serialx.redact_uri(entry.data[CONF_URL])},
            errors=errors,
        )


if TYPE_CHECKING:
    _OptionsFlow = OptionsFlow
else:
    # Home Assistant 2025.8+ reloads the entry when the options change.
    _OptionsFlow = getattr(config_entries, "OptionsFlowWithReload", OptionsFlow)


def _number(minimum: float, maximum: float, unit: str, step: float = 1) -> NumberSelector:
    return NumberSelector(
        NumberSelectorConfig(
            min=minimum, max=maximum, step=step, unit_of_measurement=unit, mode=NumberSelectorMode.BOX
        )
    )


# Write policy and counter guard options: (key, default, selector).
_POLICY_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    (CONF_LIVE, DEFAULT_LIVE, BooleanSelector()),
    (CONF_COUNTER_INTERVAL, DEFAULT_COUNTER_INTERVAL, _number(1, 3600, "s")),
    (CONF_MEASUREMENT_INTERVAL, DEFAULT_MEASUREMENT_INTERVAL, _number(1, 3600, "s")),
    (CONF_DEADBAND, DEFAULT_DEADBAND, _number(0, 100, "%")),
    (CONF_MAX_POWER, DEFAULT_MAX_POWER, _number(1, 10000, "kW", 0.1)),
    (CONF_MAX_GAS_FLOW, DEFAULT_MAX_GAS_FLOW, _number(0.1, 10000, "m³/h", 0.1)),
    (CONF_MAX_WATER_FLOW, DEFAULT_MAX_WATER_FLOW, _number(0.1, 10000, "m³/h", 0.1)),
)
# Alert thresholds (core/alerts): (key, default, selector).
_ALERT_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    (CONF_WATER_QUIET, DEFAULT_WATER_QUIET, _number(5, 720, "min")),
    (CONF_BURST_FLOW, DEFAULT_BURST_FLOW, _number(1, 1000, "L/min", 0.5)),
    (CONF_BURST_MINUTES, DEFAULT_BURST_MINUTES, _number(1, 240, "min")),
    (CONF_LEAK_REPAIR_HOURS, DEFAULT_LEAK_REPAIR_HOURS, _number(1, 720, "h")),
    (CONF_HIGH_DAY_FACTOR, DEFAULT_HIGH_DAY_FACTOR, _number(1.2, 20, "x", 0.1)),
    (CONF_OUTAGE_TIMEOUT, DEFAULT_OUTAGE_TIMEOUT, _number(20, 3600, "s")),
)


class SmartMeterOptionsFlow(_OptionsFlow):
    """Options that take effect with a reload, no restart."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """The meter clock's time zone (DSMR timestamps are local time) and how readings are written."""
        if self.config_entry.data.get(CONF_PROTOCOL) in CLOUD_PROTOCOLS:
            return await self.async_step_cloud(user_input)
        if self.config_entry.data.get(CONF_PROTOCOL) == PROTOCOL_PLANNER:
            return await self.async_step_planner_options(user_input)
        errors: dict[str, str] = {}
        if user_input is not None:
            zone = user_input[CONF_TIME_ZONE].strip()
            if _valid_time_zone(zone):
                return self.async_create_entry(data=user_input | {CONF_TIME_ZONE: zone})
            errors[CONF_TIME_ZONE] = "invalid_time_zone"
        zones = sorted(
            {
                self.hass.config.time_zone,
                "Europe/Amsterdam",
                "Europe/Brussels",
                "Europe/Luxembourg",
                "Europe/Stockholm",
                "Europe/Vienna",
                "Europe/Budapest",
                "Europe/Dublin",
                "UTC",
            }
        )
        options = self.config_entry.options
        schema: dict[Any, Any] = {
            vol.Required(CONF_TIME_ZONE): SelectSelector(
                SelectSelectorConfig(options=zones, custom_value=True, mode=SelectSelectorMode.DROPDOWN)
            )
        }
        suggested: dict[str, Any] = {CONF_TIME_ZONE: options.get(CONF_TIME_ZONE, self.hass.config.time_zone)}
        for key, default, selector in (*_POLICY_OPTIONS, *_ALERT_OPTIONS):
            schema[vol.Required(key, default=default)] = selector
            suggested[key] = options.get(key, default)
        data = self.config_entry.data
        if data.get(CONF_PROTOCOL) == PROTOCOL_MBUS or data.get(CONF_READOUT):
            schema[vol.Required(CONF_POLL_INTERVAL, default=DEFAULT_POLL_INTERVAL)] = _number(5, 3600, "s")
            suggested[CONF_POLL_INTERVAL] = options.get(CONF_POLL_INTERVAL, DEFAULT_POLL_INTERVAL)
        return self.async_show_form(
            step_id="init",
            data_schema=self.add_suggested_values_to_schema(
                vol.Schema(schema), suggested | (user_input or {})
            ),
            errors=errors,
        )

    async def async_step_planner_options(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """A planner: its price source and limits."""
        return await async_planner_options(self, user_input)

    async def async_step_cloud(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """A cloud account: how much history to import, how far back to re-import, when to warn."""
        if user_input is not None:
            return self.async_create_entry(data=user_input)
        protocol = self.config_entry.data[CONF_PROTOCOL]
        fields: list[tuple[str, Any, Any]] = [
            (CONF_BACKFILL_DAYS, DEFAULT_BACKFILL_DAYS, _number(1, 1095, "d")),
            (CONF_RESTATE_DAYS, DEFAULT_RESTATE_DAYS, _number(1, 60, "d")),
            (CONF_STALE_HOURS, DEFAULT_STALE_HOURS, _number(1, 720, "h")),
        ]
        if protocol == PROTOCOL_OCTOPUS:
            fields += [
                (
                    CONF_GAS_UNIT,
                    DEFAULT_GAS_UNIT,
                    SelectSelector(
                        SelectSelectorConfig(options=["m3", "kWh"], translation_key=CONF_GAS_UNIT)
                    ),
                ),
                (CONF_CALORIFIC_VALUE, DEFAULT_CALORIFIC_VALUE, _number(30, 50, "MJ/m³", 0.1)),
            ]
        else:
            fields.append((CONF_LIVE, DEFAULT_CLOUD_LIVE, BooleanSelector()))
        fields += [option for option in _ALERT_OPTIONS if option[0] == CONF_HIGH_DAY_FACTOR]
        options = self.config_entry.options
        schema = {vol.Required(key, default=default): selector for key, default, selector in fields}
        suggested = {key: options.get(key, default) for key, default, _ in fields}
        return self.async_show_form(
            step_id="cloud", data_schema=self.add_suggested_values_to_schema(vol.Schema(schema), suggested)
        )
