"""The planner's price inputs: price lists from entity attributes, a time-of-use schedule, the tariff register.

Three sources of a price (and of a peak signal) feed the planner:

* **A dynamic price sensor.** :func:`prices_from_attributes` reads the price
  list a Home Assistant price integration keeps in its entity attributes (or a
  price service's response) and returns :class:`~.models.PriceSlot` s in UTC.
  :func:`detect_format` names the shape for the config flow. Shapes read (each
  checked against the integration's source; ``tests/fixtures/price_attributes``
  holds a dump of each):

  ``nordpool``
      custom-components/nordpool (HACS) sensor: ``raw_today`` /
      ``raw_tomorrow`` = ``[{start, end, value}]`` (local datetimes, 15-minute
      entries since Nord Pool's 15-minute day-ahead, hourly before), the plain
      ``today`` / ``tomorrow`` value lists, ``tomorrow_valid``, ``unit``
      (``kWh``/``MWh``/``Wh``) and ``price_in_cents``. The plain lists are read
      only when the raw ones are missing (their slots are anchored at local
      midnight of ``now``'s day in ``tz``).
  ``entsoe``
      JaccoR/hass-entso-e average-price sensor: ``prices_today``,
      ``prices_tomorrow``, ``prices`` = ``[{time, price}]`` with ``time`` as
      ``str(datetime)`` (``"2025-10-26 00:00:00+02:00"``; the integration keeps
      each period's first offset through a DST change, which still names the
      right instant). No end: the granularity (15 or 60 minutes, as configured)
      comes from the spacing. Unit ``<currency>/kWh`` or ``/MWh`` (its
      ``energy_scale`` option).
  ``octopus``
      BottlecapDave/HomeAssistant-OctopusEnergy event entities
      ``event.*_current_day_rates`` / ``*_next_day_rates`` /
      ``*_previous_day_rates``: ``rates`` = ``[{start, end, value_inc_vat,
      is_capped, ...}]`` in GBP/kWh (30 minutes). Also the sensor attributes
      before v9 (Nov 2023): ``all_rates`` / ``applicable_rates`` with
      ``start``/``end`` or ``valid_from``/``valid_to`` (GBP/kWh). Not read: the
      2022-2023 ``rates`` = ``[{from, to, rate}]`` whose ``rate`` was in pence
      while the entity's unit said GBP/kWh.
  ``smartmeter``
      this integration's own current-price sensor (cloud providers): ``prices``
      = ``[{start, end, price}]`` (ISO 8601, price in the entity's unit).
  ``energyzero``
      Home Assistant core ``energyzero`` and ``easyenergy`` have **no** list
      attributes; their services ``energyzero.get_energy_prices`` /
      ``easyenergy.get_energy_usage_prices`` / ``get_energy_return_prices``
      answer ``{"prices": [{timestamp, price}]}`` (``str(datetime)`` in UTC,
      hourly, EUR/kWh). The HA layer may pass such a response here.
  ``tibber``
      Home Assistant core ``tibber``'s price sensor has **no** list (only
      ``max_price``, ``avg_price``, ``price_level``...); its service
      ``tibber.get_prices`` answers ``{"prices": {home: [{start_time, price,
      level}]}}`` (currency/kWh), read here.
  ``tibber_prices``
      jpawlowski/hass.tibber_prices ``sensor.*_chart_data_export``: its
      ``get_chartdata`` response under ``data`` (``[{start_time,
      price_per_kwh}]``, possibly nested as ``data.data`` next to ``metadata``;
      the unit from ``metadata.currency.unit`` when none is given).
  ``nordpool_service``
      Home Assistant core ``nordpool`` sensors have **no** list attributes (the
      lowest/highest price sensors carry one ``start``/``end``); its service
      ``nordpool.get_prices_for_date`` answers ``{area: [{start, end, price}]}``
      in **currency/MWh**, read here (``/MWh`` is assumed when no unit is given).
  ``generic``
      any other list of objects with a start (``start``, ``start_time``,
      ``startsAt``, ``from``, ``time``, ``timestamp``...), an optional end
      (``end``, ``till``, ``to``...) and a price (``price``, ``value``,
      ``total``...), e.g. Frank Energie's ``prices`` = ``[{from, till, price}]``.

* **A time-of-use schedule** (:class:`TouSchedule`): peak windows per weekday
  in local time, holidays, prices; written in a compact text form for the
  config flow (:meth:`TouSchedule.parse`).

* **The meter's tariff register** (DSMR ``0-0:96.14.0``), :func:`tariff_peak`.

Units: a price in ``c``/``ct``/``cent``/``¢``/``p``/``pence``/``øre``/``öre``
per kWh is divided by 100, per MWh by 1000, per Wh multiplied by 1000, exactly
(:class:`~decimal.Decimal`), see :func:`price_unit_factor`.
"""

from __future__ import annotations

import logging
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .models import PriceSlot

_LOGGER = logging.getLogger(__name__)

HOUR: Final = timedelta(hours=1)
# The longest step inferred for a list without ends (every format here is 15, 30 or 60 minutes).
_MAX_STEP: Final = HOUR
_STEPS: Final = frozenset({timedelta(minutes=15), timedelta(minutes=30), HOUR})

# ----------------------------------------------------------------------------- units

# Currency sub-units (1/100 of the currency), lower case.
_SUBUNITS: Final = frozenset(
    {"c", "ct", "cent", "cents", "eurocent", "¢", "p", "pence", "øre", "öre", "ore", "snt", "gr", "rp"}
)
_ENERGY: Final = {"kwh": Decimal(1), "mwh": Decimal("0.001"), "wh": Decimal(1000)}


def price_unit_factor(unit: str | None) -> Decimal | None:
    """The factor that turns a price in ``unit`` into currency per kWh.

    ``None`` or a bare currency (``"EUR"``) is taken as currency/kWh (1).
    ``"c/kWh"``, ``"öre/kWh"``, ``"p/kWh"`` give 1/100; ``"EUR/MWh"`` 1/1000;
    ``"c/MWh"`` 1/100000; ``"EUR/Wh"`` 1000. A unit per anything else than
    energy (``"EUR/m³"``, ``"%"``) gives ``None``: not a price per kWh.
    """
    if unit is None:
        return Decimal(1)
    text = unit.strip()
    if not text:
        return Decimal(1)
    if text == "%":
        return None
    money, sep, energy = text.rpartition("/")
    if not sep:
        money, energy = text, "kwh"
    energy_key = energy.strip().lower().replace(" ", "")
    per = _ENERGY.get(energy_key)
    if per is None:
        return None
    words = money.strip().lower().split()
    factor = per
    if words and words[-1] in _SUBUNITS:
        factor = factor / 100
    return factor


# ----------------------------------------------------------------------------- values and times


def _decimal(value: Any) -> Decimal | None:
    """An exact Decimal from a JSON/attribute number or numeric string, else None."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        if isinstance(value, Decimal):
            result = value
        elif isinstance(value, int):
            result = Decimal(value)
        elif isinstance(value, float):
            result = Decimal(repr(value))  # the shortest repr: 0.1 stays 0.1
        elif isinstance(value, str):
            result = Decimal(value.strip())
        else:
            return None
    except (InvalidOperation, ValueError):
        return None
    return result if result.is_finite() else None


def _when(value: Any) -> datetime | None:
    """A datetime (aware or naive) from a datetime or an ISO 8601 string with a time; else None."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()
    if len(text) < 16:  # at least YYYY-MM-DDTHH:MM
        return None
    if text[-1] in "zZ":
        text = text[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _local_to_utc(naive: datetime, zone: tzinfo, fold: int = 0) -> datetime:
    """A local wall-clock time in ``zone`` as UTC.

    A time skipped by a DST change (02:30 on a spring-forward night) maps to
    the change itself (the first moment the wall clock shows a later time).
    """
    result = naive.replace(tzinfo=zone, fold=fold).astimezone(UTC)
    if result.astimezone(zone).replace(tzinfo=None) == naive:
        return result
    # In a gap: the first instant whose wall time is >= naive lies in [low, high].
    low = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if low > high:
        low, high = high, low
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).replace(tzinfo=None) >= naive:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0) if high.microsecond else high


@dataclass(slots=True)
class _Entry:
    start: datetime
    end: datetime | None
    price: Decimal


class _Reader:
    """Collects valid entries from attribute lists; counts what it skips."""

    def __init__(self, tz: tzinfo, factor: Decimal) -> None:
        self.tz = tz
        self.factor = factor
        self.entries: list[_Entry] = []
        self.skipped = 0

    def _aware(self, value: datetime, previous: datetime | None) -> datetime:
        if value.tzinfo is not None and value.utcoffset() is not None:
            return value.astimezone(UTC)
        naive = value.replace(tzinfo=None)
        first = _local_to_utc(naive, self.tz, 0)
        if previous is not None and first <= previous:
            # The repeated hour of a fall-back night, in list order: the second occurrence.
            second = _local_to_utc(naive, self.tz, 1)
            if second > previous:
                return second
        return first

    def read(
        self,
        items: Any,
        start_keys: Sequence[str],
        price_keys: Sequence[str],
        end_keys: Sequence[str] = (),
    ) -> None:
        """Read ``[{start, [end], price}]``; skip malformed entries."""
        if not isinstance(items, (list, tuple)):
            if items is not None:
                self.skipped += 1
            return
        previous_naive: datetime | None = None
        for item in items:
            if not isinstance(item, Mapping):
                self.skipped += 1
                continue
            start_raw = _first(item, start_keys)
            price = _decimal(_first(item, price_keys))
            start_value = _when(start_raw)
            if start_value is None or price is None:
                self.skipped += 1
                continue
            naive = start_value.tzinfo is None or start_value.utcoffset() is None
            start = self._aware(start_value, previous_naive if naive else None)
            if naive:
                previous_naive = start
            end: datetime | None = None
            end_value = _when(_first(item, end_keys)) if end_keys else None
            if end_value is not None:
                end = self._aware(end_value, start)
                if end <= start:
                    end = None
            self.entries.append(_Entry(start, end, price * self.factor))

    def read_values(self, values: Any, day: date) -> None:
        """Read a plain list of one local day's values (Nord Pool's ``today``/``tomorrow``)."""
        if not isinstance(values, (list, tuple)) or not values:
            return
        midnight = _local_to_utc(datetime.combine(day, time()), self.tz)
        length = _local_to_utc(datetime.combine(day + timedelta(days=1), time()), self.tz) - midnight
        step = length / len(values)
        if step not in _STEPS:
            _LOGGER.debug("%d values do not divide the %s-long day %s", len(values), length, day)
            self.skipped += len(values)
            return
        for index, value in enumerate(values):
            price = _decimal(value)
            if price is None:
                self.skipped += 1
                continue
            start = midnight + step * index
            self.entries.append(_Entry(start, start + step, price * self.factor))


def _first(item: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if key in item:
            return item[key]
    return None


def _first_dict(value: Any) -> Mapping[str, Any] | None:
    if isinstance(value, (list, tuple)):
        for item in value:
            if isinstance(item, Mapping):
                return item
    return None


# ----------------------------------------------------------------------------- slots from entries


def _finish(entries: Iterable[_Entry]) -> list[PriceSlot]:
    """Sorted, non-overlapping slots: ends inferred, duplicates and overlaps dropped (finer slots win)."""
    ordered = sorted(entries, key=lambda e: e.start)
    starts: list[datetime] = []
    for entry in ordered:
        if not starts or starts[-1] != entry.start:
            starts.append(entry.start)
    candidates: list[PriceSlot] = []
    for entry in ordered:
        end = entry.end
        if end is None:
            index = bisect_right(starts, entry.start) - 1
            steps = []
            if index + 1 < len(starts):
                steps.append(starts[index + 1] - entry.start)
            if index > 0:
                steps.append(entry.start - starts[index - 1])
            end = entry.start + min([*steps, _MAX_STEP])
        candidates.append(PriceSlot(entry.start, end, entry.price))
    # Finer slots first: a 15-minute price beats an hourly average over the same quarter.
    candidates.sort(key=lambda s: s.end - s.start)
    return _fill_all([], candidates)


def _fill_all(accepted: list[PriceSlot], candidates: Iterable[PriceSlot]) -> list[PriceSlot]:
    """Add ``candidates`` (in priority order) into the gaps of the sorted, disjoint ``accepted``."""
    result = list(accepted)
    starts = [s.start for s in result]
    for slot in candidates:
        if not result or slot.start >= result[-1].end:
            result.append(slot)
            starts.append(slot.start)
            continue
        index = max(bisect_right(starts, slot.start) - 1, 0)
        cursor = slot.start
        pieces: list[PriceSlot] = []
        while index < len(result) and result[index].start < slot.end:
            other = result[index]
            if other.end > cursor:
                if other.start > cursor:
                    pieces.append(replace(slot, start=cursor, end=other.start))
                cursor = other.end
                if cursor >= slot.end:
                    break
            index += 1
        if cursor < slot.end:
            pieces.append(replace(slot, start=cursor, end=slot.end))
        for piece in pieces:
            position = bisect_right(starts, piece.start)
            starts.insert(position, piece.start)
            result.insert(position, piece)
    return result


def merge(*sources: Sequence[PriceSlot]) -> list[PriceSlot]:
    """One sorted, disjoint price list: the first source wins, later sources only fill its gaps.

    A later slot that overlaps earlier ones is cut to the gaps (e.g. a
    time-of-use schedule filling the hours the dynamic prices do not cover yet).
    """
    result: list[PriceSlot] = []
    for source in sources:
        result = _fill_all(result, sorted(source, key=lambda s: s.start))
    return result


# ----------------------------------------------------------------------------- formats

_START_KEYS: Final = (
    "start",
    "start_time",
    "startsAt",
    "starts_at",
    "from",
    "valid_from",
    "time",
    "timestamp",
    "datetime",
    "date_time",
)
_END_KEYS: Final = ("end", "end_time", "endsAt", "ends_at", "till", "to", "valid_to", "until")
_PRICE_KEYS: Final = ("price", "value", "value_inc_vat", "price_per_kwh", "total", "price_total")
_ENTSOE_LISTS: Final = ("prices_today", "prices_tomorrow", "prices")
_OCTOPUS_LISTS: Final = ("rates", "all_rates", "applicable_rates")


def _is_area_response(attributes: Mapping[str, Any]) -> bool:
    """Home Assistant core Nord Pool's service response: ``{AREA: [{start, end, price}]}``."""
    if not attributes:
        return False
    for key, value in attributes.items():
        if not isinstance(key, str) or not re.fullmatch(r"[A-Z]{2}[A-Z0-9]{0,4}", key):
            return False
        first = _first_dict(value)
        if first is None or not {"start", "end", "price"} <= first.keys():
            return False
    return True


def _tibber_prices_list(attributes: Mapping[str, Any]) -> tuple[Any, Mapping[str, Any] | None]:
    """hass.tibber_prices chart data: the point list and the metadata, if present."""
    data = attributes.get("data")
    if isinstance(data, Mapping):
        return data.get("data"), data.get("metadata") if isinstance(data.get("metadata"), Mapping) else None
    metadata = attributes.get("metadata")
    return data, metadata if isinstance(metadata, Mapping) else None


def _generic_lists(attributes: Mapping[str, Any]) -> list[Any]:
    lists = []
    for value in attributes.values():
        first = _first_dict(value)
        if (
            first is not None
            and _first(first, _START_KEYS) is not None
            and _first(first, _PRICE_KEYS) is not None
        ):
            lists.append(value)
    return lists


def detect_format(attributes: Mapping[str, Any]) -> str | None:
    """The name of the price-list shape in ``attributes`` (see the module doc), or None.

    None also for entities known to carry no list: Home Assistant core's Nord
    Pool, Tibber, EnergyZero and easyEnergy sensors (their services do).
    """
    if not isinstance(attributes, Mapping):
        return None
    if "raw_today" in attributes or "raw_tomorrow" in attributes:
        return "nordpool"
    if "tomorrow_valid" in attributes and isinstance(attributes.get("today"), (list, tuple)):
        return "nordpool"
    if "prices_today" in attributes and "prices_tomorrow" in attributes:
        return "entsoe"
    for key in _ENTSOE_LISTS:
        first = _first_dict(attributes.get(key))
        if first is not None and "time" in first and "price" in first:
            return "entsoe"
    for key in _OCTOPUS_LISTS:
        first = _first_dict(attributes.get(key))
        if first is not None and "value_inc_vat" in first:
            return "octopus"
    prices = attributes.get("prices")
    first = _first_dict(prices)
    if first is not None and "price" in first:
        if "start" in first:
            return "smartmeter"
        if "timestamp" in first:
            return "energyzero"
    if isinstance(prices, Mapping) and prices:
        homes = [_first_dict(v) for v in prices.values()]
        if all(h is not None and "start_time" in h and "price" in h for h in homes):
            return "tibber"
    points, _ = _tibber_prices_list(attributes)
    first = _first_dict(points)
    if first is not None and _first(first, ("start_time",)) is not None and "price_per_kwh" in first:
        return "tibber_prices"
    if _is_area_response(attributes):
        return "nordpool_service"
    if _generic_lists(attributes):
        return "generic"
    return None


def _nordpool_unit(attributes: Mapping[str, Any]) -> str | None:
    energy = attributes.get("unit")
    if energy not in ("kWh", "MWh", "Wh"):
        energy = "kWh"
    money = "c" if attributes.get("price_in_cents") is True else str(attributes.get("currency") or "")
    return f"{money}/{energy}"


def _read_nordpool(reader: _Reader, attributes: Mapping[str, Any], now: datetime) -> None:
    reader.read(attributes.get("raw_today"), ("start",), ("value",), ("end",))
    reader.read(attributes.get("raw_tomorrow"), ("start",), ("value",), ("end",))
    if reader.entries:
        return
    today = now.astimezone(reader.tz).date()
    reader.read_values(attributes.get("today"), today)
    reader.read_values(attributes.get("tomorrow"), today + timedelta(days=1))


def _read_entsoe(reader: _Reader, attributes: Mapping[str, Any], _now: datetime) -> None:
    for key in _ENTSOE_LISTS:
        reader.read(attributes.get(key), ("time",), ("price",))


def _read_octopus(reader: _Reader, attributes: Mapping[str, Any], _now: datetime) -> None:
    for key in _OCTOPUS_LISTS:
        reader.read(attributes.get(key), ("start", "valid_from"), ("value_inc_vat",), ("end", "valid_to"))


def _read_smartmeter(reader: _Reader, attributes: Mapping[str, Any], _now: datetime) -> None:
    reader.read(attributes.get("prices"), ("start",), ("price",), ("end",))


def _read_energyzero(reader: _Reader, attributes: Mapping[str, Any], _now: datetime) -> None:
    reader.read(attributes.get("prices"), ("timestamp",), ("price",))


def _read_tibber(reader: _Reader, attributes: Mapping[str, Any], _now: datetime) -> None:
    prices = attributes.get("prices")
    if isinstance(prices, Mapping):
        # One home: the HA layer passes a single home's response; with several, the first.
        for home in prices.values():
            reader.read(home, ("start_time",), ("price",))
            return


def _read_tibber_prices(reader: _Reader, attributes: Mapping[str, Any], _now: datetime) -> None:
    points, _ = _tibber_prices_list(attributes)
    reader.read(points, ("start_time",), ("price_per_kwh",), ("end_time",))


def _read_nordpool_service(reader: _Reader, attributes: Mapping[str, Any], _now: datetime) -> None:
    for area in attributes.values():  # one area expected; several would collide (first wins)
        reader.read(area, ("start",), ("price",), ("end",))
        return


def _read_generic(reader: _Reader, attributes: Mapping[str, Any], _now: datetime) -> None:
    for items in _generic_lists(attributes):
        reader.read(items, _START_KEYS, _PRICE_KEYS, _END_KEYS)


_READERS: Final[dict[str, Callable[[_Reader, Mapping[str, Any], datetime], None]]] = {
    "nordpool": _read_nordpool,
    "entsoe": _read_entsoe,
    "octopus": _read_octopus,
    "smartmeter": _read_smartmeter,
    "energyzero": _read_energyzero,
    "tibber": _read_tibber,
    "tibber_prices": _read_tibber_prices,
    "nordpool_service": _read_nordpool_service,
    "generic": _read_generic,
}
FORMATS: Final = frozenset(_READERS)


def _default_unit(name: str, attributes: Mapping[str, Any]) -> str | None:
    """The unit a shape implies when the entity gives none."""
    if name == "nordpool":
        return _nordpool_unit(attributes)
    if name == "nordpool_service":
        return "/MWh"
    if name == "tibber_prices":
        _, metadata = _tibber_prices_list(attributes)
        currency = metadata.get("currency") if metadata else None
        if isinstance(currency, Mapping) and isinstance(currency.get("unit"), str):
            return str(currency["unit"])
    return None


def prices_from_attributes(
    attributes: Mapping[str, Any],
    *,
    unit: str | None = None,
    tz: tzinfo = UTC,
    now: datetime | None = None,
) -> list[PriceSlot]:
    """The price list in an entity's attributes (or a price service's response) as PriceSlots.

    The shape is detected (:func:`detect_format`). ``unit`` is the entity's
    unit of measurement (``"EUR/kWh"``, ``"c/kWh"``, ``"SEK/MWh"``...); without
    one the shape's own unit applies (Nord Pool's ``unit``/``price_in_cents``
    attributes, ``/MWh`` for core Nord Pool's service, currency/kWh otherwise).
    Naive times are local times in ``tz``; ``now`` anchors Nord Pool's plain
    value lists. The result is sorted, disjoint, in UTC, prices in
    currency/kWh; ends come from the entries, else from the next start or the
    list's granularity. Malformed entries are skipped (logged at debug); never
    raises on bad data: returns ``[]`` when nothing is usable.
    """
    try:
        name = detect_format(attributes)
    except Exception:  # odd mappings (a custom __contains__) must not break the planner
        _LOGGER.debug("Price attributes could not be inspected", exc_info=True)
        return []
    if name is None:
        _LOGGER.debug("No price list found in attributes %s", sorted(map(str, attributes))[:20])
        return []
    factor = price_unit_factor(unit if unit is not None else _default_unit(name, attributes))
    if factor is None:
        _LOGGER.debug("Unit %r is not a price per energy", unit)
        return []
    reader = _Reader(tz, factor)
    try:
        _READERS[name](reader, attributes, now if now is not None else datetime.now(UTC))
    except Exception:  # never raise on bad data
        _LOGGER.debug("Reading %s prices failed", name, exc_info=True)
        return []
    if reader.skipped:
        _LOGGER.debug("%s prices: %d entries skipped", name, reader.skipped)
    return _finish(reader.entries)


# ----------------------------------------------------------------------------- peaks in slot lists


def next_peak_change(slots: Sequence[PriceSlot], when: datetime, peak: bool) -> datetime | None:
    """The next start (after ``when``) of a run of slots whose ``peak`` flag is ``peak``.

    A run starts where the previous slot has the other flag or does not touch it
    (a gap). None when the slots hold no such start after ``when``.
    """
    previous: PriceSlot | None = None
    for slot in sorted(slots, key=lambda s: s.start):
        starts_run = previous is None or previous.end != slot.start or previous.peak != slot.peak
        if slot.peak == peak and starts_run and slot.start > when:
            return slot.start
        previous = slot
    return None


# ----------------------------------------------------------------------------- time of use

_DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_GROUPS: Final = {
    "daily": frozenset(range(7)),
    "all": frozenset(range(7)),
    "weekdays": frozenset(range(5)),
    "weekend": frozenset({5, 6}),
}


@lru_cache(maxsize=32)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(f"unknown time zone {name!r}") from err


@dataclass(frozen=True, slots=True)
class PeakWindow:
    """A peak period on ``weekdays`` (0 = Monday) from ``start`` to ``end`` local time.

    ``end <= start`` crosses midnight (``22:00-06:00`` ends the next morning;
    ``start == end`` lasts 24 hours). ``price`` overrides the schedule's
    ``peak_price``.
    """

    weekdays: frozenset[int]
    start: time
    end: time
    price: Decimal | None = None

    def __post_init__(self) -> None:
        if not self.weekdays or not self.weekdays <= frozenset(range(7)):
            raise ValueError(f"weekdays must be a non-empty set of 0..6, not {sorted(self.weekdays)}")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("window times are local wall-clock times without a time zone")

    @property
    def crosses_midnight(self) -> bool:
        """Whether the window ends on the next day."""
        return self.end <= self.start


@dataclass(frozen=True, slots=True)
class TouSchedule:
    """A time-of-use tariff: peak windows in local time (``tz``), off-peak otherwise.

    Holidays are off-peak all day (a window crossing into a holiday stops at
    its midnight). Prices are optional: without them the schedule still gives
    the peak signal (:meth:`is_peak`, :meth:`next_change`), and :meth:`slots`
    leaves out the periods whose price is unknown.
    """

    windows: tuple[PeakWindow, ...] = ()
    offpeak_price: Decimal | None = None
    peak_price: Decimal | None = None
    holidays: frozenset[date] = field(default_factory=frozenset)
    tz: str = "UTC"

    def __post_init__(self) -> None:
        _zone(self.tz)

    # -- intervals

    def _pieces(self, start: datetime, end: datetime) -> list[PriceSlot]:
        """Peak periods (peak=True, price may be Decimal(NaN) for unknown) clipped to [start, end)."""
        zone = _zone(self.tz)
        first = start.astimezone(zone).date() - timedelta(days=1)
        last = end.astimezone(zone).date()
        unknown = Decimal("NaN")
        candidates: list[PriceSlot] = []
        for window in self.windows:
            price = window.price if window.price is not None else self.peak_price
            value = price if price is not None else unknown
            day = first
            while day <= last:
                if day.weekday() in window.weekdays:
                    candidates.extend(self._window_pieces(window, day, value, start, end))
                day += timedelta(days=1)
        # First window wins where windows overlap; contiguous pieces of one price join.
        filled = _fill_all([], candidates)
        joined: list[PriceSlot] = []
        for piece in filled:
            if joined and joined[-1].end == piece.start and _same(joined[-1].price, piece.price):
                joined[-1] = replace(joined[-1], end=piece.end)
            else:
                joined.append(piece)
        return joined

    def _window_pieces(
        self, window: PeakWindow, day: date, price: Decimal, start: datetime, end: datetime
    ) -> list[PriceSlot]:
        zone = _zone(self.tz)
        begin = datetime.combine(day, window.start)
        finish = datetime.combine(day + timedelta(days=1) if window.crosses_midnight else day, window.end)
        pieces = []
        cursor = begin
        while cursor < finish:  # one piece per local date, so holidays can drop theirs
            midnight = datetime.combine(cursor.date() + timedelta(days=1), time())
            stop = min(finish, midnight)
            if cursor.date() not in self.holidays:
                low = max(_local_to_utc(cursor, zone), start)
                high = min(_local_to_utc(stop, zone), end)
                if low < high:
                    pieces.append(PriceSlot(low, high, price, peak=True))
            cursor = stop
        return pieces

    def slots(self, start: datetime, end: datetime) -> list[PriceSlot]:
        """PriceSlots covering ``[start, end)`` in UTC, cut at the window edges, peak ones flagged.

        Periods whose price is unknown (no window/peak price, no off-peak price) are left out.
        """
        start, end = _utc(start), _utc(end)
        if end <= start:
            return []
        peaks = self._pieces(start, end)
        offpeak = self.offpeak_price
        result: list[PriceSlot] = []
        cursor = start
        for piece in [*peaks, None]:
            gap_end = piece.start if piece is not None else end
            if cursor < gap_end and offpeak is not None:
                result.append(PriceSlot(cursor, gap_end, offpeak))
            if piece is not None:
                if piece.price.is_finite():
                    result.append(piece)
                cursor = piece.end
        return result

    def is_peak(self, when: datetime) -> bool:
        """Whether ``when`` falls in a peak window."""
        when = _utc(when)
        return bool(self._pieces(when, when + timedelta(seconds=1)))

    def next_change(self, when: datetime, peak: bool) -> datetime | None:
        """The next start (after ``when``) of a peak period (``peak``) or of an off-peak period.

        None when there is none within a year (no windows, or holidays all year).
        """
        when = _utc(when)
        if not self.windows:
            return None
        for days in (8, 35, 370):
            horizon = when + timedelta(days=days)
            for piece in self._merged(when, horizon):
                if peak and piece[0] > when:
                    return piece[0]
                if not peak and when < piece[1] < horizon:
                    return piece[1]
        return None

    def _merged(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        merged: list[tuple[datetime, datetime]] = []
        for piece in self._pieces(start, end):
            if merged and merged[-1][1] == piece.start:
                merged[-1] = (merged[-1][0], piece.end)
            else:
                merged.append((piece.start, piece.end))
        return merged

    # -- text form

    @classmethod
    def parse(cls, text: str, tz: str) -> TouSchedule:
        """A schedule from its text form; ValueError naming the bad part.

        Clauses separated by ``;`` or new lines (case-insensitive)::

            mon-fri 07:00-22:00 0.35     a window: days, HH:MM-HH:MM, optional price
            sat,sun 09:00-13:00          days: mon..sun, ranges (fri-mon wraps), lists,
                                         or daily / weekdays / weekend
            22:00-06:00                  ends at or before its start: crosses midnight;
                                         24:00 ends at midnight
            peak 0.30                    the price of windows without their own
            offpeak 0.22                 the price outside the windows
            holidays 2026-12-25,2026-12-26   off-peak all day

        Prices are currency/kWh, a plain decimal (``0.35``, ``-0.01``).
        """
        _zone(tz)
        windows: list[PeakWindow] = []
        offpeak: Decimal | None = None
        peak: Decimal | None = None
        holidays: set[date] = set()
        clauses = [c.strip() for c in re.split(r"[;\n]", text or "") if c.strip()]
        if not clauses:
            raise ValueError("the schedule is empty")
        for clause in clauses:
            words = clause.lower().split()
            head = words[0]
            if head in ("offpeak", "off-peak", "peak"):
                if len(words) != 2:
                    raise ValueError(f"'{clause}': expected '{head} <price>'")
                value = _parse_price(words[1], clause)
                if head == "peak":
                    if peak is not None:
                        raise ValueError(f"'{clause}': the peak price is given twice")
                    peak = value
                else:
                    if offpeak is not None:
                        raise ValueError(f"'{clause}': the off-peak price is given twice")
                    offpeak = value
            elif head in ("holiday", "holidays"):
                if len(words) < 2:
                    raise ValueError(f"'{clause}': expected 'holidays YYYY-MM-DD[,YYYY-MM-DD...]'")
                for item in "".join(words[1:]).split(","):
                    if not item:
                        continue
                    try:
                        holidays.add(date.fromisoformat(item))
                    except ValueError:
                        raise ValueError(f"'{clause}': bad date '{item}' (YYYY-MM-DD)") from None
            else:
                windows.append(_parse_window(words, clause))
        return cls(tuple(windows), offpeak, peak, frozenset(holidays), tz)

    def to_text(self) -> str:
        """The text form :meth:`parse` reads back to an equal schedule."""
        parts = []
        for window in self.windows:
            days = ",".join(_DAYS[d] for d in sorted(window.weekdays))
            end = "24:00" if window.end == time() and window.start != time() else window.end.strftime("%H:%M")
            part = f"{days} {window.start.strftime('%H:%M')}-{end}"
            if window.price is not None:
                part += f" {window.price}"
            parts.append(part)
        if self.peak_price is not None:
            parts.append(f"peak {self.peak_price}")
        if self.offpeak_price is not None:
            parts.append(f"offpeak {self.offpeak_price}")
        if self.holidays:
            parts.append("holidays " + ",".join(d.isoformat() for d in sorted(self.holidays)))
        return "; ".join(parts)


def _same(a: Decimal, b: Decimal) -> bool:
    return (a.is_nan() and b.is_nan()) or (not a.is_nan() and not b.is_nan() and a == b)


def _utc(when: datetime) -> datetime:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"an aware datetime is needed, not {when!r}")
    return when.astimezone(UTC)


_PRICE_RE: Final = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_TIME_RE: Final = re.compile(r"(\d{1,2}):(\d{2})")


def _parse_price(text: str, clause: str) -> Decimal:
    if not _PRICE_RE.fullmatch(text):
        raise ValueError(f"'{clause}': bad price '{text}' (a decimal such as 0.25)")
    return Decimal(text)


def _parse_time(text: str, clause: str, *, end: bool) -> time:
    match = _TIME_RE.fullmatch(text)
    if not match:
        raise ValueError(f"'{clause}': bad time '{text}' (HH:MM)")
    hour, minute = int(match[1]), int(match[2])
    if end and hour == 24 and minute == 0:
        return time()
    if hour > 23 or minute > 59:
        raise ValueError(f"'{clause}': bad time '{text}' (00:00-23:59, or 24:00 as an end)")
    return time(hour, minute)


def _parse_days(text: str, clause: str) -> frozenset[int]:
    days: set[int] = set()
    for item in text.split(","):
        if item in _DAY_GROUPS:
            days |= _DAY_GROUPS[item]
            continue
        first, sep, last = item.partition("-")
        for name in (first, last) if sep else (first,):
            if name not in _DAYS:
                raise ValueError(
                    f"'{clause}': bad day '{name}' (mon..sun, a range such as mon-fri, daily, weekdays or weekend)"
                )
        begin = _DAYS.index(first)
        stop = _DAYS.index(last) if sep else begin
        day = begin
        while True:
            days.add(day)
            if day == stop:
                break
            day = (day + 1) % 7
    return frozenset(days)


def _parse_window(words: list[str], clause: str) -> PeakWindow:
    # "[days] HH:MM-HH:MM [price]"; without days, every day.
    if words and _TIME_RE.match(words[0]) and "-" in words[0]:
        words = ["daily", *words]
    if len(words) not in (2, 3):
        raise ValueError(f"'{clause}': expected '<days> HH:MM-HH:MM [price]'")
    days = _parse_days(words[0], clause)
    start_text, sep, end_text = words[1].partition("-")
    if not sep:
        raise ValueError(f"'{clause}': bad period '{words[1]}' (HH:MM-HH:MM)")
    start = _parse_time(start_text, clause, end=False)
    end = _parse_time(end_text, clause, end=True)
    price = _parse_price(words[2], clause) if len(words) == 3 else None
    return PeakWindow(days, start, end, price)


# ----------------------------------------------------------------------------- tariff register

# DSMR 0-0:96.14.0 "tariff indicator electricity": which tariff register counts now.
# NL (DSMR 2.2-5.0, NEN-EN-IEC 62056-21 / P1 companion standard): 1 = low (night,
# weekend), 2 = normal (day). Belgium (e-MUCS, Fluvius/ORES/Sibelga) and E.ON
# Hungary swap them: 1 = day/peak ("normal"), 2 = night. Home Assistant core's dsmr
# integration swaps for its "5B" and "5EONHU" versions for the same reason.
TARIFF_PEAK_CODES: Final = {
    "NL": frozenset({2}),
    "BE": frozenset({1}),
    "HU": frozenset({1}),
}


def tariff_peak(
    register_value: str | int | Decimal | None,
    *,
    peak_codes: frozenset[int] | None = None,
    country: str | None = None,
) -> bool | None:
    """Whether the meter's tariff register (DSMR ``0-0:96.14.0``) says "peak" (day/normal tariff).

    ``peak_codes`` lists the indicator values that mean peak; else
    ``country``'s (:data:`TARIFF_PEAK_CODES`: NL ``{2}``, BE and HU ``{1}``);
    else the Dutch default ``{2}``. Accepts ``"0002"``, ``2``, ``Decimal(2)``;
    None for a missing or invalid value. An unknown ``country`` raises ValueError.
    """
    if peak_codes is None:
        if country is None:
            peak_codes = TARIFF_PEAK_CODES["NL"]
        else:
            codes = TARIFF_PEAK_CODES.get(country.upper())
            if codes is None:
                raise ValueError(
                    f"no tariff-indicator convention known for {country!r}; "
                    f"pass peak_codes (known: {', '.join(sorted(TARIFF_PEAK_CODES))})"
                )
            peak_codes = codes
    code = _tariff_code(register_value)
    if code is None:
        return None
    return code in peak_codes


def _tariff_code(value: str | int | Decimal | None) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        code = value
    else:
        number = _decimal(value)
        if number is None or number != number.to_integral_value():
            return None
        code = int(number)
    return code if 1 <= code <= 9999 else None
