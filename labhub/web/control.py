"""A robot kit's control panel: its declared outputs (digital toggles, PWM sliders, servo
angles) with the values read back, and a STOP ALL that is always in view.

The panel shows only what the person may do at the device's site: anyone who may read
devices sees the outputs and their state; ``devices.stop`` (students too) adds STOP ALL;
``devices.command`` adds the drive controls. With JavaScript (``static/control.js``) each
control sends its command to the JSON API (``POST /api/v1/devices/{id}/commands``) and
reads the outputs back from ``GET /api/v1/devices/{id}/outputs``; without it, each
control is a form posted here, which runs the API's own route function
(:func:`labhub.api.devices.send_command`: the same permission checks, rules, audit entry
and errors) and answers 303 back to the panel, or the panel again with the refusal in
words beside the control (403, 404, 409, 422). The words for each refusal live here once
and reach the script through data- attributes.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Final, get_args
from urllib.parse import urlencode

from fastapi import APIRouter, BackgroundTasks, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from firmware_bridge import registry
from firmware_bridge.actuators import CommandError, CommandName, OutputSetting
from firmware_bridge.errors import (
    DeviceReopeningError,
    DeviceUnavailableError,
    NoSuchDeviceError,
)
from firmware_bridge.firmata import FirmataError
from labhub.access import trail
from labhub.access.caller import Forbidden
from labhub.access.gate import On, gated_caller, needs, require_at
from labhub.access.permissions import Permission
from labhub.api import devices as devices_api
from labhub.api.deps import HubDep
from labhub.web import i18n
from labhub.web.i18n import N_
from labhub.web.pages import PageRoute, language_of, render, signed_form

router = APIRouter(route_class=PageRoute, include_in_schema=False)

COMMANDS: Final = frozenset(get_args(CommandName))
POLL_MS: Final = 1000  # read the outputs back once a second while the page is in view

# Why a command was refused, by the API's status (the API's detail is English and for
# developers). ``busy`` is a 409 with Retry-After: the board is being opened or reopened.
REASONS: Final = {
    "401": N_("Your session has ended: sign in again, then try once more."),
    "403": N_("You may not drive this kit's outputs. STOP ALL is always yours to press."),
    "404": N_("This kit is not on this hub any more."),
    "409": N_("The kit is not connected: check its USB cable, then try again."),
    "busy": N_("The kit is starting up: try again in %(seconds)s s."),
    "422": N_("The kit's settings do not allow this: the pin is not one of its outputs, "
              "or the value is out of range."),
    "503": N_("The hub is busy: try again in a few seconds."),
    "network": N_("No answer from the hub: check the network and try again."),
}
DONE: Final = {
    "sent": N_("Sent: the kit took the command."),
    "stopped": N_("STOP ALL sent: every output is back at its safe value."),
}


@dataclass(frozen=True, slots=True)
class Output:
    """One declared output as the panel shows it: its control's scale (percent for PWM,
    degrees for a servo) and the value read back (None: not known, the kit is offline)."""

    pin: int
    kind: str
    label: str
    low: int
    high: int
    safe: float
    value: float | None

    @property
    def shown(self) -> int | None:
        """The read-back value on the control's scale."""
        if self.value is None:
            return None
        return round(self.value * 100) if self.kind == "pwm" else round(self.value)


def _outputs(declared: dict[int, OutputSetting], read: dict[int, float] | None,
             label: Any) -> list[Output]:
    shown = []
    for pin, out in sorted(declared.items()):
        low, high = (0, 1) if out.kind == "digital" else (0, 100) if out.kind == "pwm" else (
            math.ceil(out.min_angle), math.floor(out.max_angle))
        shown.append(Output(pin=pin, kind=out.kind, label=out.label or label(out.kind, pin),
                            low=low, high=high, safe=out.safe,
                            value=None if read is None else read.get(pin)))
    return shown


def _may(request: Request, permission: Permission, site: str | None) -> bool:
    try:
        require_at(request, permission, site)
    except Forbidden:
        return False
    return True


def _panel(request: Request, hub: HubDep, device_id: str, *, status: int = 200,
           done: str | None = None, refused: tuple[int | None, str] | None = None,
           tried: dict[str, str] | None = None) -> HTMLResponse:
    """The panel; ``refused``: (the pin whose control was refused, or None for the
    panel as a whole; the words)."""
    _ = i18n.gettext_of(language_of(request))
    with hub.engine.connect() as conn:
        device = registry.get_device(conn=conn, device_id=device_id)  # NoSuchDeviceError
    declared = device.settings.firmata.outputs if device.kind == "firmata" else {}
    try:
        read: dict[int, float] | None = hub.outputs(device_id) if declared else None
    except DeviceUnavailableError:
        read = None
    kinds = {"digital": _("Light or relay"), "pwm": _("Motor"), "servo": _("Servo")}

    def label(kind: str, pin: int) -> str:
        return _("%(kind)s on pin %(pin)s", kind=kinds.get(kind, kind), pin=pin)

    reasons = {key: _(words) for key, words in REASONS.items()}
    reasons["busy"] = _(REASONS["busy"], seconds="{seconds}")
    return render(
        request, "control.html", status=status, caller=gated_caller(request),
        device=device, outputs=_outputs(declared, read, label),
        connected=read is not None and device.online,
        may_stop=_may(request, Permission.DEVICES_STOP, device.site),
        may_drive=_may(request, Permission.DEVICES_COMMAND, device.site),
        done=_(DONE[done]) if done in DONE else None, refused=refused, tried=tried or {},
        reasons=reasons, done_words={key: _(words) for key, words in DONE.items()},
        poll_ms=POLL_MS)


@router.get("/devices/{device_id}/control",
            dependencies=[needs(Permission.DEVICES_READ, On.path("device", "device_id"))])
def control_panel(device_id: str, request: Request, hub: HubDep) -> HTMLResponse:
    """A kit's control panel: its outputs and their values read back, STOP ALL, and the
    drive controls the person may use."""
    return _panel(request, hub, device_id, done=request.query_params.get("done"))


def _command_of(form: dict[str, str]) -> devices_api.CommandIn | None:
    """The API's command body from the panel's form (a PWM slider says percent); None if
    the form is not one of the panel's."""
    command = form.get("command", "")
    if command not in COMMANDS:
        return None
    try:
        if command == "stop_all":
            return devices_api.CommandIn(command="stop_all")
        pin = int(form.get("pin", ""))
        value = float(form.get("value", "").replace(",", "."))
        if not math.isfinite(value):
            return None
        if command == "pwm":
            value = value / 100
        return devices_api.CommandIn(command=command, pin=pin, value=value)  # type: ignore[arg-type]
    except (ValueError, ValidationError):
        return None


def _log_refusal(request: Request, exc: Forbidden) -> None:
    """The refusal's audit entry, as the API's handler of Forbidden writes it."""
    caller = getattr(request.state, "caller", None)
    # A database that cannot take it does not change the answer.
    with contextlib.suppress(SQLAlchemyError):
        trail.record_refusal(request, status=403, permission=exc.permission.value,
                             site=exc.site, actor=None if caller is None else caller.name)


@router.post("/devices/{device_id}/control",
             dependencies=[needs(Permission.DEVICES_STOP, On.path("device", "device_id"))])
async def control_form(device_id: str, request: Request, hub: HubDep,
                       later: BackgroundTasks) -> Response:
    """A control's form without JavaScript: the API's command route, then 303 back to the
    panel with what was done, or the panel with the refusal beside the control."""
    form = await signed_form(request)
    body = _command_of(form)
    pin = None if body is None or body.command == "stop_all" else body.pin
    _ = i18n.gettext_of(language_of(request))
    status, why, retry_after = 422, REASONS["422"], None
    if body is not None:
        try:
            await run_in_threadpool(devices_api.send_command, device_id, body, hub, request,
                                    later)
        except Forbidden as exc:
            await run_in_threadpool(_log_refusal, request, exc)
            status, why = 403, REASONS["403"]
        except NoSuchDeviceError:
            status, why = 404, REASONS["404"]
        except CommandError:
            status, why = 422, REASONS["422"]
        except DeviceReopeningError as exc:
            retry_after = max(1, math.ceil(exc.retry_after_s))
            status, why = 409, REASONS["busy"]
        except (DeviceUnavailableError, FirmataError):
            status, why = 409, REASONS["409"]
        else:
            done = "stopped" if body.command == "stop_all" else "sent"
            where = request.scope.get("root_path", "") + request.url.path
            anchor = "" if pin is None else f"#out-{pin}"
            return RedirectResponse(f"{where}?{urlencode({'done': done})}{anchor}",
                                    status_code=303)
    if status == 404:
        raise NoSuchDeviceError(device_id)  # the 404 page: there is no panel to show
    words = _(why, seconds=retry_after) if retry_after is not None else _(why)
    answer = await run_in_threadpool(_panel, request, hub, device_id, status=status,
                                     refused=(pin, words), tried=form)
    if retry_after is not None:
        answer.headers["Retry-After"] = str(retry_after)
    return answer
