"""Calibrations of school-kit sensors, checked against their datasheet figures."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensors.calibration import PRESETS, CalibrationError, build, table
from sensors.quantities import QUANTITIES


def test_lm35_and_tmp36_follow_their_datasheets() -> None:
    # 0.25 V on a 5 V, 10-bit ADC is 51.15 counts: 25 degC for an LM35.
    assert build({"sensor": "lm35"})(51.15) == pytest.approx(25.0)
    # TMP36: 750 mV at 25 degC; on a 3.3 V board that is 232.5 counts.
    assert build({"sensor": "tmp36", "vref": 3.3})(750 / 3300 * 1023) == pytest.approx(25.0)
    assert build({"sensor": "tmp36"})(0) == pytest.approx(-50.0)


def test_relative_soil_and_divider() -> None:
    assert build({"sensor": "ldr"})(1023) == pytest.approx(100.0)
    assert build({"sensor": "potentiometer", "inverted": True})(1023) == pytest.approx(0.0)
    soil = build({"sensor": "soil", "dry": 820, "wet": 380})
    assert (soil(820), soil(600), soil(380), soil(1000), soil(0)) == (
        0.0, pytest.approx(50.0), 100.0, 0.0, 100.0)
    # 10 k over 10 k halves 9 V to 4.5 V = 920.7 counts.
    assert build({"sensor": "divider", "r1": 10_000, "r2": 10_000})(920.7) == pytest.approx(9.0)


def test_linear_and_table() -> None:
    assert build({"linear": [0.5, -10]})(40) == 10.0
    curve = build({"table": [[0, 0], [500, 10], [1000, 40]]})
    assert (curve(-5), curve(250), curve(750), curve(2000)) == (0.0, 5.0, 25.0, 40.0)


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ({"sensor": "dht99"}, "unknown sensor 'dht99'"),
        ({"sensor": "soil", "dry": 500, "wet": 500}, "different dry and wet"),
        ({"table": [[1, 1]]}, "at least two points"),
        ({"table": [[1, 1], [1, 2]]}, "same x"),
        ({"sensor": "lm35", "vref": -1}, "must be positive"),
        ({"sensor": "lm35", "colour": "red"}, "not valid"),
        ({"linear": [1]}, "not valid"),
    ],
)
def test_bad_calibrations_say_why(spec: dict[str, object], complaint: str) -> None:
    with pytest.raises(CalibrationError, match=complaint):
        build(spec)


def test_every_preset_names_a_known_quantity() -> None:
    for _builder, quantity, unit in PRESETS.values():
        assert QUANTITIES[quantity].unit == unit


@given(st.lists(st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6)), min_size=2,
                max_size=10, unique_by=lambda p: p[0]), st.floats(-2e6, 2e6))
def test_a_table_stays_within_its_points(points: list[tuple[float, float]], x: float) -> None:
    y = table(points)(x)
    ys = [p[1] for p in points]
    assert min(ys) - 1e-6 <= y <= max(ys) + 1e-6
