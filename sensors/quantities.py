"""The physical quantities that school kits measure, their units and their names.

Each quantity has one canonical unit (what LabHub stores), labels in Spanish, English and
Portuguese, and a plausible range: a value outside it is kept but flagged ``suspect``.
Alternative units (degF, K, Pa, kPa, km/h, ...) convert on the way in with a linear
``value * scale + offset``, which is all that any of them needs. Channel names that kits
commonly print (``temp``, ``hum``, ``BME280_pressure``, ``SDS_P2``, ``temperatura``) map to
a quantity; a name that maps to nothing is kept exactly as sent, with no quantity.

Some names say what is measured but not in which unit: a sketch's ``light``, ``soil`` or
``sound`` is most often a raw ``analogRead()`` count, not lux or percent. Such a name gives
its quantity only when the unit is known (sent with the value, or set by the device's
channel map or calibration); without one the value is kept as a plain number and the
channel is *unmapped* (:attr:`ChannelSpec.unmapped`), so the device's status can ask a
teacher to map it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from sensors.errors import SensorsError

LANGUAGES = ("es", "en", "pt")


class UnitError(SensorsError):
    """A unit that does not convert to the canonical unit of the channel's quantity."""


@dataclass(frozen=True, slots=True)
class Quantity:
    """A physical quantity: its key, canonical unit, labels and plausible range."""

    key: str
    unit: str
    labels: Mapping[str, str]
    low: float
    high: float

    def label(self, lang: str = "en") -> str:
        """The quantity's name in ``lang`` (es, en or pt), English when unknown."""
        return self.labels.get(lang, self.labels["en"])


def _q(key: str, unit: str, es: str, en: str, pt: str, low: float, high: float) -> Quantity:
    return Quantity(key, unit, MappingProxyType({"es": es, "en": en, "pt": pt}), low, high)


# Plausible ranges are what the sensors in school kits can physically report, a little
# wider than the weather: a student may put a TMP36 into hot water, but a reading of
# 900 degC is a loose wire, not a measurement.
QUANTITIES: Mapping[str, Quantity] = MappingProxyType(
    {
        q.key: q
        for q in (
            _q("temperature", "degC", "Temperatura", "Temperature", "Temperatura", -60, 125),
            _q("humidity", "%", "Humedad relativa", "Relative humidity", "Umidade relativa",
               0, 100),
            _q("pressure", "hPa", "Presión atmosférica", "Air pressure", "Pressão atmosférica",
               300, 1100),
            _q("illuminance", "lx", "Iluminancia", "Illuminance", "Iluminância", 0, 200_000),
            _q("soil_moisture", "%", "Humedad del suelo", "Soil moisture", "Umidade do solo",
               0, 100),
            _q("co2", "ppm", "CO2", "CO2", "CO2", 0, 40_000),
            _q("pm2_5", "ug/m3", "PM2.5", "PM2.5", "PM2,5", 0, 1_000),
            _q("pm10", "ug/m3", "PM10", "PM10", "PM10", 0, 2_000),
            _q("uv_index", "UVI", "Índice UV", "UV index", "Índice UV", 0, 20),
            _q("rainfall", "mm", "Lluvia", "Rainfall", "Chuva", 0, 500),
            _q("wind_speed", "m/s", "Velocidad del viento", "Wind speed", "Velocidade do vento",
               0, 75),
            _q("sound_level", "dB", "Nivel de sonido", "Sound level", "Nível sonoro", 0, 140),
            _q("distance", "cm", "Distancia", "Distance", "Distância", 0, 1_000),
            _q("voltage", "V", "Voltaje", "Voltage", "Tensão", -50, 50),
            # An LDR gives light relative to its own range, not lux; a potentiometer a position.
            _q("light_level", "%", "Nivel de luz", "Light level", "Nível de luz", 0, 100),
            _q("position", "%", "Posición", "Position", "Posição", 0, 100),
            # 10-bit Arduino ADCs give 0..1023, ESP32 0..4095, an ADS1115 up to 32767.
            _q("analog", "counts", "Lectura analógica", "Analog reading", "Leitura analógica",
               0, 65_535),
        )
    }
)

# Unit spellings seen on real kits, folded to one name each.
_UNIT_ALIASES: Mapping[str, str] = {
    "c": "degC", "°c": "degC", "ºc": "degC", "degc": "degC", "celsius": "degC", "deg c": "degC",
    "f": "degF", "°f": "degF", "ºf": "degF", "degf": "degF", "fahrenheit": "degF",
    "k": "K", "kelvin": "K",
    "%": "%", "%rh": "%", "pct": "%", "percent": "%", "rh": "%",
    "hpa": "hPa", "mbar": "hPa", "mb": "hPa", "pa": "Pa", "kpa": "kPa", "bar": "bar",
    "inhg": "inHg", "mmhg": "mmHg", "psi": "psi",
    "lx": "lx", "lux": "lx", "klx": "klx",
    "ppm": "ppm", "ppb": "ppb",
    "ug/m3": "ug/m3", "µg/m3": "ug/m3", "μg/m3": "ug/m3", "ug/m^3": "ug/m3", "µg/m³": "ug/m3",
    "μg/m³": "ug/m3", "ug/m³": "ug/m3", "mg/m3": "mg/m3",
    "uvi": "UVI", "uv index": "UVI", "index": "UVI",
    "mm": "mm", "cm": "cm", "m": "m", "in": "in", "inch": "in", "ft": "ft",
    "m/s": "m/s", "km/h": "km/h", "kmh": "km/h", "kph": "km/h", "mph": "mph", "kn": "kn",
    "kt": "kn", "knots": "kn",
    "db": "dB", "dba": "dB", "db(a)": "dB",
    "v": "V", "mv": "mV",
    "counts": "counts", "raw": "counts", "adc": "counts",
}

# (canonical unit, unit) -> (scale, offset), so that canonical = value * scale + offset.
_CONVERSIONS: Mapping[tuple[str, str], tuple[float, float]] = {
    ("degC", "degF"): (5 / 9, -32 * 5 / 9),
    ("degC", "K"): (1.0, -273.15),
    ("hPa", "Pa"): (0.01, 0.0),
    ("hPa", "kPa"): (10.0, 0.0),
    ("hPa", "bar"): (1000.0, 0.0),
    ("hPa", "inHg"): (33.863_886_67, 0.0),
    ("hPa", "mmHg"): (1.333_223_684, 0.0),
    ("hPa", "psi"): (68.947_572_93, 0.0),
    ("lx", "klx"): (1000.0, 0.0),
    ("ppm", "ppb"): (0.001, 0.0),
    ("ug/m3", "mg/m3"): (1000.0, 0.0),
    ("mm", "cm"): (10.0, 0.0),
    ("mm", "in"): (25.4, 0.0),
    ("cm", "mm"): (0.1, 0.0),
    ("cm", "m"): (100.0, 0.0),
    ("cm", "in"): (2.54, 0.0),
    ("cm", "ft"): (30.48, 0.0),
    ("m/s", "km/h"): (1 / 3.6, 0.0),
    ("m/s", "mph"): (0.447_04, 0.0),
    ("m/s", "kn"): (1852 / 3600, 0.0),
    ("V", "mV"): (0.001, 0.0),
}

# Channel names -> (quantity, unit implied by the name or None for canonical).
_CHANNEL_ALIASES: dict[str, tuple[str, str | None]] = {}
# Names that say what is measured but not the unit: on school kits they are mostly raw
# analogRead() counts (an LDR, a resistive soil probe, a microphone module, a rain board),
# so they give their quantity only with a known unit.
_UNIT_NEEDED: set[str] = set()


def _alias(quantity: str, unit: str | None, *names: str, unit_needed: bool = False) -> None:
    for name in names:
        _CHANNEL_ALIASES[name] = (quantity, unit)
        if unit_needed:
            _UNIT_NEEDED.add(name)


_alias("temperature", None, "temperature", "temp", "t", "tmp", "tempc", "temp_c", "temperatura",
       "airtemp", "air_temp", "celsius", "ds18b20", "lm35", "tmp36")
_alias("temperature", "degF", "tempf", "temp_f", "fahrenheit")
_alias("humidity", None, "humidity", "hum", "h", "rh", "humi", "relative_humidity", "humedad",
       "umidade")
_alias("pressure", None, "pressure", "pres", "press", "p", "baro", "presion", "presión",
       "pressao", "pressão")
_alias("illuminance", None, "illuminance", "lux", "lx")
_alias("illuminance", None, "light", "luz", "luminosity", "luminosidad", unit_needed=True)
_alias("soil_moisture", None, "soil", "soil_moisture", "soilmoisture", "moisture",
       "humedad_suelo", "umidade_solo", unit_needed=True)
_alias("co2", None, "co2", "eco2", "carbon_dioxide")
_alias("pm2_5", None, "pm25", "pm2.5", "pm2_5", "p2")
_alias("pm10", None, "pm10", "p1")
_alias("uv_index", None, "uvi", "uv_index", "uvindex")
_alias("uv_index", None, "uv", unit_needed=True)
_alias("rainfall", None, "rainfall", "precipitation", "precip")
_alias("rainfall", None, "rain", "lluvia", "chuva", unit_needed=True)
_alias("wind_speed", None, "wind_speed", "windspeed")
_alias("wind_speed", None, "wind", "viento", "vento", unit_needed=True)
_alias("sound_level", None, "sound_level", "db")
_alias("sound_level", None, "sound", "noise", "ruido", "ruído", unit_needed=True)
_alias("distance", None, "distance", "dist", "distancia", "distância", "ultrasonic")
_alias("voltage", None, "voltage", "volt", "volts", "vcc", "battery", "bat", "voltaje", "tensao",
       "tensão")
_alias("analog", None, "analog", "raw", "adc", *(f"a{i}" for i in range(16)))

# Prefixes of sensor-named channels (airrohr and Smart Citizen style: BME280_pressure,
# SDS_P1). The part after the prefix is looked up as a channel name; some sensors report
# in a unit other than the canonical one, which the prefix tells.
_SENSOR_PREFIX = re.compile(r"^(?P<sensor>[a-z]+[0-9]*[a-z0-9]*)_(?P<rest>[a-z0-9.]+)$")
_SENSOR_UNITS: Mapping[tuple[str, str], str] = {
    # airrohr firmware posts BME280/BMP280/BMP180 pressure in Pa.
    ("bme280", "pressure"): "Pa",
    ("bmp280", "pressure"): "Pa",
    ("bmp180", "pressure"): "Pa",
    ("bmp", "pressure"): "Pa",
}


# How a reader writes a unit (a spreadsheet header, a table), where it differs from the
# stored spelling; per language where the word is a word. Stored units stay ASCII.
_UNIT_TEXT: Mapping[str, Mapping[str, str]] = {
    "degC": {"en": "°C", "es": "°C", "pt": "°C"},
    "degF": {"en": "°F", "es": "°F", "pt": "°F"},
    "ug/m3": {"en": "µg/m³", "es": "µg/m³", "pt": "µg/m³"},
    "mg/m3": {"en": "mg/m³", "es": "mg/m³", "pt": "mg/m³"},
    "counts": {"en": "counts", "es": "cuentas", "pt": "contagens"},
}


def unit_text(unit: str, lang: str = "en") -> str:
    """``unit`` as a reader expects it in ``lang`` (es, en or pt): ``degC`` is ``°C``,
    ``ug/m3`` is ``µg/m³``, ADC ``counts`` are ``cuentas`` in Spanish; others as stored."""
    words = _UNIT_TEXT.get(unit)
    return unit if words is None else words.get(lang, words["en"])


def normalize_unit(unit: str) -> str:
    """The one spelling LabHub uses for ``unit`` (``°C`` -> ``degC``); unknown units unchanged."""
    folded = unit.strip()
    return _UNIT_ALIASES.get(folded.lower(), folded)


def quantity_for_channel(channel: str) -> tuple[Quantity, str | None] | None:
    """The quantity a channel name stands for, with the unit the name implies (or None)."""
    name = channel.strip().lower()
    hit = _CHANNEL_ALIASES.get(name)
    if hit is None:
        match = _SENSOR_PREFIX.match(name)
        if match is None:
            return None
        sensor, rest = match.group("sensor"), match.group("rest")
        hit = _CHANNEL_ALIASES.get(rest)
        if hit is None:
            return None
        implied = _SENSOR_UNITS.get((sensor, hit[0]))
        if implied is not None:
            hit = (hit[0], implied)
    return QUANTITIES[hit[0]], hit[1]


def conversion(quantity: Quantity, unit: str | None) -> tuple[float, float]:
    """``(scale, offset)`` taking ``unit`` to the quantity's canonical unit.

    Raises :class:`UnitError` when the unit does not belong to the quantity.
    """
    if unit is None:
        return 1.0, 0.0
    unit = normalize_unit(unit)
    if unit == quantity.unit:
        return 1.0, 0.0
    found = _CONVERSIONS.get((quantity.unit, unit))
    if found is None:
        raise UnitError(
            f"unit {unit!r} does not convert to {quantity.unit} ({quantity.key})"
        )
    return found


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """How the values of one channel are stored: quantity, unit, conversion and range.

    ``low``/``high`` are ``-inf``/``inf`` for channels with no known quantity, so the range
    check costs the same for every reading.
    """

    quantity: str | None
    unit: str | None
    scale: float
    offset: float
    low: float
    high: float
    # The name suggests a quantity whose unit is not known: kept as a plain number.
    unmapped: bool = False


def unit_needed(channel: str) -> bool:
    """Whether ``channel``'s name gives its quantity only together with a known unit."""
    return channel.strip().lower() in _UNIT_NEEDED


def resolve_channel(
    channel: str, unit: str | None = None, *, quantity: str | None = None
) -> ChannelSpec:
    """How to store ``channel`` sent in ``unit``.

    ``quantity`` overrides what the channel name suggests (a device's channel map says
    ``A0`` is light). A channel with no known quantity is stored as sent, in the unit it
    came with. Raises :class:`UnitError` for a unit its quantity cannot take, and
    ``KeyError``-free :class:`UnitError` for an unknown ``quantity`` key.
    """
    implied: str | None = None
    found: Quantity | None
    if quantity is not None:
        found = QUANTITIES.get(quantity)
        if found is None:
            raise UnitError(f"unknown quantity {quantity!r}; known: {', '.join(QUANTITIES)}")
    else:
        hit = quantity_for_channel(channel)
        found, implied = (None, None) if hit is None else hit
        if found is not None and unit_needed(channel):
            try:
                if unit is None:
                    raise UnitError(f"no unit for {channel!r}")
                conversion(found, unit)
            except UnitError:
                # Probably a raw count: a plain number until the channel map says more.
                return ChannelSpec(None, None if unit is None else normalize_unit(unit), 1.0,
                                   0.0, float("-inf"), float("inf"), unmapped=True)
    if found is None:
        return ChannelSpec(None, None if unit is None else normalize_unit(unit), 1.0, 0.0,
                           float("-inf"), float("inf"))
    scale, offset = conversion(found, unit if unit is not None else implied)
    return ChannelSpec(found.key, found.unit, scale, offset, found.low, found.high)
