"""Calibrations: raw values from school-kit sensors into physical quantities.

Each calibration is a plain function of one float. The presets cover the sensors found in
school kits, read through a 10-bit Arduino ADC (0..1023 counts over the reference voltage,
5 V on an Uno) unless told otherwise:

- LM35: 10 mV per degC from 0 V at 0 degC;
- TMP36: 10 mV per degC with a 500 mV offset (0.75 V at 25 degC);
- LDR in a divider: light as a relative 0..100 % (an LDR gives no absolute lux);
- capacitive or resistive soil probe: 0 % at the "dry" reading, 100 % at the "wet" one;
- potentiometer: position 0..100 %;
- voltage divider: the voltage before a divider of R1 (top) and R2 (bottom);
- linear ``a * x + b`` and table interpolation for anything else.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from typing import Any

from sensors.errors import SensorsError

Calibration = Callable[[float], float]
ADC_MAX_10BIT = 1023  # an Uno's ADC full scale


class CalibrationError(SensorsError):
    """A calibration whose parameters make no sense (a table out of order, dry == wet)."""


def linear(a: float, b: float = 0.0) -> Calibration:
    """``a * x + b``."""
    return lambda x: a * x + b


def table(points: Sequence[tuple[float, float]]) -> Calibration:
    """Piecewise-linear interpolation through ``(x, y)`` points, held flat beyond the ends."""
    pts = sorted((float(x), float(y)) for x, y in points)
    if len(pts) < 2:
        raise CalibrationError("a calibration table needs at least two points")
    xs = [x for x, _ in pts]
    ys = [y for _, y in pts]
    if len(set(xs)) != len(xs):
        raise CalibrationError("a calibration table has two points with the same x")

    def interpolate(x: float) -> float:
        if x <= xs[0]:
            return ys[0]
        if x >= xs[-1]:
            return ys[-1]
        i = bisect_right(xs, x)
        x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
        return y0 + (y1 - y0) * (x - x0) / (x1 - x0)

    return interpolate


def _volts(vref: float, adc_max: int) -> float:
    if vref <= 0 or adc_max <= 0:
        raise CalibrationError("reference voltage and ADC range must be positive")
    return vref / adc_max


def lm35(vref: float = 5.0, adc_max: int = ADC_MAX_10BIT) -> Calibration:
    """LM35 in degC from ADC counts: 10 mV per degC."""
    per_count = _volts(vref, adc_max) * 100
    return lambda x: x * per_count


def tmp36(vref: float = 5.0, adc_max: int = ADC_MAX_10BIT) -> Calibration:
    """TMP36 in degC from ADC counts: (V - 0.5) * 100."""
    volts = _volts(vref, adc_max)
    return lambda x: (x * volts - 0.5) * 100


def relative(adc_max: int = ADC_MAX_10BIT, *, inverted: bool = False) -> Calibration:
    """0..100 % of the ADC range (an LDR divider, a potentiometer); ``inverted`` flips it."""
    if adc_max <= 0:
        raise CalibrationError("the ADC range must be positive")
    if inverted:
        return lambda x: 100.0 - x * 100.0 / adc_max
    return lambda x: x * 100.0 / adc_max


def soil_moisture(dry: float, wet: float) -> Calibration:
    """0 % at the ``dry`` reading, 100 % at ``wet``, clamped (probes drift past both)."""
    if dry == wet:
        raise CalibrationError("soil calibration needs different dry and wet readings")
    span = wet - dry
    return lambda x: min(100.0, max(0.0, (x - dry) * 100.0 / span))


def voltage_divider(
    r1: float, r2: float, vref: float = 5.0, adc_max: int = ADC_MAX_10BIT
) -> Calibration:
    """The voltage before a divider with ``r1`` on top and ``r2`` to ground, in V."""
    if r1 < 0 or r2 <= 0:
        raise CalibrationError("divider resistances must be positive")
    factor = _volts(vref, adc_max) * (r1 + r2) / r2
    return lambda x: x * factor


PRESETS: dict[str, tuple[Callable[..., Calibration], str, str]] = {
    # name: (builder, quantity, unit of the result)
    "lm35": (lm35, "temperature", "degC"),
    "tmp36": (tmp36, "temperature", "degC"),
    "ldr": (relative, "light_level", "%"),
    "potentiometer": (relative, "position", "%"),
    "soil": (soil_moisture, "soil_moisture", "%"),
    "divider": (voltage_divider, "voltage", "V"),
}


def output_of(spec: dict[str, Any]) -> tuple[str, str] | None:
    """The quantity and unit a preset sensor's calibration gives (``("temperature",
    "degC")`` for an LM35), or None for a linear or table calibration, whose result the
    channel map must name."""
    sensor = spec.get("sensor")
    if "linear" in spec or "table" in spec or not isinstance(sensor, str):
        return None
    found = PRESETS.get(sensor)
    return None if found is None else (found[1], found[2])


def build(spec: dict[str, Any]) -> Calibration:
    """A calibration from its description, e.g. ``{"sensor": "tmp36", "vref": 3.3}``,
    ``{"linear": [0.5, -10]}`` or ``{"table": [[0, 0], [1023, 100]]}``."""
    try:
        if "linear" in spec:
            a, b = spec["linear"]
            return linear(float(a), float(b))
        if "table" in spec:
            return table([(float(x), float(y)) for x, y in spec["table"]])
        sensor = spec.get("sensor")
        if sensor not in PRESETS:
            raise CalibrationError(
                f"unknown sensor {sensor!r}; known: {', '.join(PRESETS)}, or linear, table"
            )
        params = {k: v for k, v in spec.items() if k != "sensor"}
        return PRESETS[sensor][0](**params)
    except CalibrationError:
        raise
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"calibration {spec!r} is not valid: {exc}") from None
