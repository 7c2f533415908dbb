"""Actuator commands for robotics kits, and the rules that keep them safe.

A command names an output pin and a value: ``digital_write`` (0 or 1), ``pwm`` (0..1 of
full power), ``servo`` (an angle in degrees). Only pins declared as outputs in the
device's settings can be driven, each only in the way it was declared; servo angles are
clamped to the declared range (a servo driven past its stops strips its gears), and
``stop_all`` puts every declared output to its safe value. These rules live here, apart
from the transports, so the API, the CLI and MQTT commands all go through the same ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

OutputKind = Literal["digital", "pwm", "servo"]
CommandName = Literal["digital_write", "pwm", "servo", "stop_all"]

_KIND_OF_COMMAND: dict[str, OutputKind] = {
    "digital_write": "digital",
    "pwm": "pwm",
    "servo": "servo",
}


class CommandError(Exception):
    """A command the device's settings do not allow, with the reason."""


class OutputSetting(BaseModel):
    """A pin declared as an output, how it may be driven and its safe value."""

    model_config = ConfigDict(extra="forbid")

    kind: OutputKind
    safe: float = Field(default=0.0, description="value stop_all sets (angle for a servo)")
    min_angle: float = Field(default=0.0, ge=0, le=180)
    max_angle: float = Field(default=180.0, ge=0, le=180)
    label: str | None = Field(default=None, max_length=100, examples=["left wheel"])

    @model_validator(mode="after")
    def _check(self) -> OutputSetting:
        if self.min_angle > self.max_angle:
            raise ValueError("min_angle is above max_angle")
        if self.kind == "servo" and not self.min_angle <= self.safe <= self.max_angle:
            raise ValueError("the safe angle of a servo must lie within its range")
        if self.kind == "digital" and self.safe not in (0.0, 1.0):
            raise ValueError("the safe value of a digital output is 0 or 1")
        if self.kind == "pwm" and not 0.0 <= self.safe <= 1.0:
            raise ValueError("the safe value of a PWM output is between 0 and 1")
        return self


@dataclass(frozen=True, slots=True)
class PinCommand:
    """One checked write to one pin."""

    pin: int
    kind: OutputKind
    value: float
    clamped: bool = False


def check_command(
    outputs: dict[int, OutputSetting], command: CommandName, pin: int | None,
    value: float | None,
) -> list[PinCommand]:
    """The pin writes that ``command`` stands for, or CommandError saying why not."""
    if command == "stop_all":
        return [PinCommand(p, o.kind, o.safe) for p, o in sorted(outputs.items())]
    if pin is None:
        raise CommandError(f"{command} needs a pin")
    if value is None:
        raise CommandError(f"{command} needs a value")
    declared = outputs.get(pin)
    if declared is None:
        allowed = ", ".join(str(p) for p in sorted(outputs)) or "none"
        raise CommandError(
            f"pin {pin} is not declared as an output of this device (outputs: {allowed})"
        )
    wanted = _KIND_OF_COMMAND[command]
    if declared.kind != wanted:
        raise CommandError(f"pin {pin} is declared as a {declared.kind} output, not {wanted}")
    if value != value:  # NaN
        raise CommandError("the value is not a number")
    if wanted == "digital":
        if value not in (0, 1):
            raise CommandError(f"a digital output takes 0 or 1, not {value}")
        return [PinCommand(pin, wanted, float(value))]
    if wanted == "pwm":
        if not 0.0 <= value <= 1.0:
            raise CommandError(f"PWM takes a fraction between 0 and 1, not {value}")
        return [PinCommand(pin, wanted, float(value))]
    clamped = min(declared.max_angle, max(declared.min_angle, float(value)))
    return [PinCommand(pin, wanted, clamped, clamped != value)]
