"""Actuator safety rules: declared outputs only, right kind only, servo angles clamped."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from firmware_bridge.actuators import CommandError, OutputSetting, PinCommand, check_command

OUTPUTS = {
    13: OutputSetting(kind="digital", label="LED"),
    5: OutputSetting(kind="pwm", safe=0.0, label="motor"),
    9: OutputSetting(kind="servo", min_angle=20, max_angle=160, safe=90, label="arm"),
}


def test_allowed_commands_pass_and_servo_angles_are_clamped() -> None:
    assert check_command(OUTPUTS, "digital_write", 13, 1) == [PinCommand(13, "digital", 1.0)]
    assert check_command(OUTPUTS, "pwm", 5, 0.25) == [PinCommand(5, "pwm", 0.25)]
    assert check_command(OUTPUTS, "servo", 9, 90) == [PinCommand(9, "servo", 90.0)]
    assert check_command(OUTPUTS, "servo", 9, 200) == [PinCommand(9, "servo", 160.0, True)]
    assert check_command(OUTPUTS, "servo", 9, -5) == [PinCommand(9, "servo", 20.0, True)]


def test_stop_all_sets_every_output_to_its_safe_value() -> None:
    assert check_command(OUTPUTS, "stop_all", None, None) == [
        PinCommand(5, "pwm", 0.0), PinCommand(9, "servo", 90.0), PinCommand(13, "digital", 0.0),
    ]


@pytest.mark.parametrize(
    ("command", "pin", "value", "complaint"),
    [
        ("digital_write", 12, 1, "pin 12 is not declared as an output of this device"),
        ("servo", 13, 90, "pin 13 is declared as a digital output, not servo"),
        ("digital_write", 13, 0.5, "takes 0 or 1"),
        ("pwm", 5, 1.5, "between 0 and 1"),
        ("pwm", 5, float("nan"), "not a number"),
        ("servo", None, 90, "needs a pin"),
        ("servo", 9, None, "needs a value"),
    ],
)
def test_commands_outside_the_settings_are_refused_with_the_reason(
    command: str, pin: int | None, value: float | None, complaint: str
) -> None:
    with pytest.raises(CommandError, match=complaint.replace("(", r"\(").replace(")", r"\)")):
        check_command(OUTPUTS, command, pin, value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"kind": "servo", "min_angle": 100, "max_angle": 50, "safe": 60}, "min_angle"),
        ({"kind": "servo", "min_angle": 10, "max_angle": 50, "safe": 90}, "within its range"),
        ({"kind": "digital", "safe": 0.5}, "0 or 1"),
        ({"kind": "pwm", "safe": 2}, "between 0 and 1"),
        ({"kind": "laser"}, "kind"),
    ],
)
def test_output_declarations_are_checked(fields: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        OutputSetting.model_validate(fields)
