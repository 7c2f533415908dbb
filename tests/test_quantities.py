"""Quantities, units and channel names."""

from __future__ import annotations

import pytest

from sensors.quantities import (
    QUANTITIES,
    UnitError,
    conversion,
    normalize_unit,
    quantity_for_channel,
    resolve_channel,
)

REQUIRED = {
    "temperature": "degC", "humidity": "%", "pressure": "hPa", "illuminance": "lx",
    "soil_moisture": "%", "co2": "ppm", "pm2_5": "ug/m3", "pm10": "ug/m3", "uv_index": "UVI",
    "rainfall": "mm", "wind_speed": "m/s", "sound_level": "dB", "distance": "cm",
    "voltage": "V", "analog": "counts", "light_level": "%", "position": "%",
}


def test_every_school_quantity_has_its_canonical_unit_and_three_labels() -> None:
    assert {k: q.unit for k, q in QUANTITIES.items()} == REQUIRED
    for q in QUANTITIES.values():
        assert set(q.labels) == {"es", "en", "pt"}
        assert all(q.labels.values())
        assert q.low < q.high
    assert QUANTITIES["humidity"].label("es") == "Humedad relativa"
    assert QUANTITIES["rainfall"].label("pt") == "Chuva"
    assert QUANTITIES["rainfall"].label("fr") == "Rainfall"


@pytest.mark.parametrize(
    ("quantity", "unit", "value", "expected"),
    [
        ("temperature", "degF", 32.0, 0.0),
        ("temperature", "°F", 212.0, 100.0),
        ("temperature", "K", 273.15, 0.0),
        ("temperature", "°C", 21.5, 21.5),
        ("pressure", "Pa", 101_325.0, 1013.25),
        ("pressure", "kPa", 101.325, 1013.25),
        ("pressure", "mbar", 1000.0, 1000.0),
        ("wind_speed", "km/h", 36.0, 10.0),
        ("distance", "mm", 125.0, 12.5),
        ("distance", "m", 1.5, 150.0),
        ("rainfall", "cm", 1.2, 12.0),
        ("voltage", "mV", 3300.0, 3.3),
        ("pm2_5", "µg/m³", 12.0, 12.0),
        ("co2", "ppb", 420_000.0, 420.0),
    ],
)
def test_alternative_units_convert_to_the_canonical_one(
    quantity: str, unit: str, value: float, expected: float
) -> None:
    scale, offset = conversion(QUANTITIES[quantity], unit)
    assert value * scale + offset == pytest.approx(expected)


def test_a_unit_of_another_quantity_is_refused_with_both_named() -> None:
    with pytest.raises(UnitError, match=r"'ppm' does not convert to degC \(temperature\)"):
        conversion(QUANTITIES["temperature"], "ppm")


@pytest.mark.parametrize(
    ("channel", "quantity"),
    [
        ("temp", "temperature"), ("Temperatura", "temperature"), ("hum", "humidity"),
        ("umidade", "humidity"), ("BME280_temperature", "temperature"),
        ("SDS_P1", "pm10"), ("SDS_P2", "pm2_5"), ("lux", "illuminance"), ("A0", "analog"),
        ("soil_moisture", "soil_moisture"), ("lluvia", "rainfall"), ("CO2", "co2"),
    ],
)
def test_channel_names_kits_print_map_to_quantities(channel: str, quantity: str) -> None:
    found = quantity_for_channel(channel)
    assert found is not None and found[0].key == quantity


def test_sensor_prefixes_imply_their_units() -> None:
    spec = resolve_channel("BME280_pressure")
    assert (spec.quantity, spec.unit, spec.scale) == ("pressure", "hPa", 0.01)
    spec = resolve_channel("tempF")
    assert spec.unit == "degC" and 50 * spec.scale + spec.offset == pytest.approx(10.0)


def test_unknown_channels_are_kept_as_sent() -> None:
    assert quantity_for_channel("value 1") is None
    spec = resolve_channel("value 1", "furlongs")
    assert (spec.quantity, spec.unit, spec.scale, spec.offset) == (None, "furlongs", 1.0, 0.0)
    assert spec.low == float("-inf") and spec.high == float("inf")


def test_a_channel_map_can_name_the_quantity() -> None:
    spec = resolve_channel("A3", "%", quantity="soil_moisture")
    assert (spec.quantity, spec.unit) == ("soil_moisture", "%")
    with pytest.raises(UnitError, match="unknown quantity 'smell'"):
        resolve_channel("A3", quantity="smell")


def test_unit_spellings_fold() -> None:
    assert normalize_unit(" ºC ") == "degC"
    assert normalize_unit("Lux") == "lx"
    assert normalize_unit("parsecs") == "parsecs"
