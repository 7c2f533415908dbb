"""The devices pages and the dead letters: what a teacher or coordinator sees of the lab's
boards and nodes, changes in their settings, and reads of what the hub refused.

``/devices`` lists the devices the person may see (status in words and an icon, kind,
firmware, last seen, counters); ``/devices/{device_id}`` shows one, with its channels'
latest values and its recent dead letters; ``/devices/{device_id}/settings`` changes its
name, site, channel map (name, quantity, unit, calibration, with a preview of a raw value
calibrated) and outputs (servo ranges, safe values), one small form each (a page form
holds at most :data:`labhub.web.pages.FORM_FIELDS_MAX` fields). The forms run the API's
own change (:func:`labhub.api.devices.patch_device`: the same checks, audit log and
reopening of the board), after the domain's own models
(:class:`~firmware_bridge.registry.ChannelSetting`,
:class:`~firmware_bridge.actuators.OutputSetting`, :func:`sensors.channels.route_channel`)
checked each value; their errors show beside their field. Every form carries the version
of the settings it was drawn from (a digest of name, site and settings): a form drawn
before someone else's change is refused with a 409 page instead of overwriting it.
``/rejects`` lists dead letters as the API's ``GET /rejects`` does, with each payload
escaped in a ``<pre>``; ``POST /rejects/replay`` runs the API's replay.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from firmware_bridge import registry
from firmware_bridge.actuators import OutputSetting
from firmware_bridge.firmata import SOURCE as FIRMATA_SOURCE
from firmware_bridge.mqtt import SOURCE as MQTT_SOURCE
from firmware_bridge.registry import ChannelSetting, Device, FirmataSettings, RegistryError
from firmware_bridge.serial_lines import SOURCE as SERIAL_SOURCE
from inventory import sites as inventory_sites
from labhub.access.caller import Forbidden
from labhub.access.gate import On, Visible, gated_caller, needs, scope_of
from labhub.access.permissions import Permission as P
from labhub.access.sites import devices_outside, tree_for
from labhub.api import devices as devices_api
from labhub.api import sensors as sensors_api
from labhub.api.deps import HubDep, settings_of
from labhub.web import i18n, pages
from labhub.web.i18n import N_
from labhub.web.pages import PageRoute
from labhub.wiring import Hub
from labtext.printable import UnprintableTextError, check_name
from labtext.times import rfc3339_us
from sensors import calibration, queries
from sensors.channels import route_channel
from sensors.importer import SOURCE as IMPORT_SOURCE
from sensors.quantities import QUANTITIES, Quantity, UnitError, conversion, unit_text

router = APIRouter(route_class=PageRoute, include_in_schema=False)

REJECTS_PER_PAGE: Final = 20  # a phone scrolls through 20 letters; more pages below
PAYLOAD_SHOWN_CHARS: Final = 4000  # of a payload's kept 64 KiB: enough to see what came
DEVICE_SCAN_MAX: Final = 2000  # newest dead letters looked through for one device's own
RECENT_REJECTS: Final = 5  # a device's page lists its newest few
PAGE_MAX: Final = 10_000  # a page number beyond any lab's dead letters
SOURCES: Final = {"http": N_("Upload (HTTP)"), SERIAL_SOURCE: N_("USB board"),
                  FIRMATA_SOURCE: N_("USB board (Firmata)"), MQTT_SOURCE: N_("Wi-Fi node (MQTT)"),
                  IMPORT_SOURCE: N_("Imported file")}
KINDS: Final = {"lines": N_("USB board"), "firmata": N_("USB board (Firmata)"),
                "mqtt": N_("Wi-Fi node (MQTT)")}
SENSORS: Final = {"lm35": N_("LM35 temperature sensor"), "tmp36": N_("TMP36 temperature sensor"),
                  "ldr": N_("Light sensor (LDR)"), "potentiometer": N_("Potentiometer"),
                  "soil": N_("Soil moisture probe"), "divider": N_("Voltage divider")}
# The parameters of each preset sensor the form asks for (sensors.calibration.PRESETS).
SENSOR_FIELDS: Final = {"lm35": ("vref",), "tmp36": ("vref",), "soil": ("dry", "wet"),
                        "divider": ("r1", "r2", "vref")}
OUTPUT_KINDS: Final = {"digital": N_("On/off"), "pwm": N_("PWM (0 to 1)"),
                       "servo": N_("Servo (angle)")}
CALIBRATIONS: Final = {"": N_("None: store the value as sent"),
                       "linear": N_("Linear: scale × raw + offset"),
                       "table": N_("Table of points (two or more)"),
                       "sensor": N_("A kit's sensor")}
CHANNEL_FIELDS: Final = ("name", "quantity", "unit", "cal", "a", "b", "points", "sensor",
                         "vref", "dry", "wet", "r1", "r2", "sample")
OUTPUT_FIELDS: Final = ("kind", "label", "min_angle", "max_angle", "safe")


# -- versions, numbers --------------------------------------------------------------------

def settings_version(device: Device) -> str:
    """A digest of what the settings form changes: another person's change alters it."""
    seen = json.dumps([device.name, device.site, device.settings.model_dump(mode="json")],
                      sort_keys=True)
    return hashlib.sha256(seen.encode()).hexdigest()[:20]


def parse_number(text: str) -> float:
    """A number as a person writes it (``2,5`` or ``2.5``); ValueError otherwise."""
    cleaned = text.strip().replace("\u00a0", "").replace(" ", "")
    if cleaned.count(",") == 1 and "." not in cleaned:
        cleaned = cleaned.replace(",", ".")
    value = float(cleaned)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _plain(value: float) -> str:
    """A number for a form field, without a needless ``.0``."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


# -- what a form says ----------------------------------------------------------------------

@dataclass
class Outcome:
    """The result of reading a form: the values to show again and the errors by field."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)


_OUTPUT_RULES: Final = (  # the domain's message (firmware_bridge.actuators) -> field, words
    ("min_angle is above max_angle", "max_angle", N_("The highest angle is below the lowest.")),
    ("safe angle of a servo", "safe", N_("The safe angle must lie between the lowest and the "
                                         "highest angle.")),
    ("safe value of a digital output", "safe", N_("The safe value of an on/off output is 0 "
                                                   "or 1.")),
    ("safe value of a PWM output", "safe", N_("The safe value of a PWM output is between 0 "
                                              "and 1.")),
)
_CALIBRATION_RULES: Final = (  # sensors.calibration's messages -> field, words
    ("at least two points", "points", N_("A table needs at least two points.")),
    ("same x", "points", N_("Two points have the same raw value.")),
    ("different dry and wet", "wet", N_("The wet reading must differ from the dry one.")),
    ("resistances", "r2", N_("The resistances must be positive.")),
    ("reference voltage", "vref", N_("The reference voltage must be positive.")),
)


def _domain_error(_: Callable[..., str], text: str,
                  rules: tuple[tuple[str, str, str], ...], fallback: str) -> tuple[str, str]:
    for part, where, words in rules:
        if part in text:
            return where, _(words)
    return fallback, _("Check this value: %(detail)s", detail=text)


def _number_fields(_: Callable[..., str], form: Mapping[str, str], names: tuple[str, ...],
                   outcome: Outcome, *, required: bool) -> dict[str, float]:
    numbers: dict[str, float] = {}
    for name in names:
        text = form.get(name, "").strip()
        if not text:
            if required:
                outcome.errors[name] = _("Write a number.")
            continue
        try:
            numbers[name] = parse_number(text)
        except ValueError:
            outcome.errors[name] = _("Write a number, such as 2.5.")
    return numbers


def _points(_: Callable[..., str], text: str, outcome: Outcome) -> list[list[float]]:
    points = []
    for pair in (p for p in text.replace("\n", ";").split(";") if p.strip()):
        raw, _sep, value = pair.partition("=")
        try:
            points.append([parse_number(raw), parse_number(value)])
        except ValueError:
            outcome.errors["points"] = _("Write each point as raw = value, separated by "
                                         "semicolons: 0 = 0; 1023 = 100.")
            return []
    if len(points) < 2 and "points" not in outcome.errors:
        outcome.errors["points"] = _("A table needs at least two points.")
    return points


def _calibration_spec(_: Callable[..., str], form: Mapping[str, str], outcome: Outcome,
                      saved: dict[str, Any] | None) -> dict[str, Any] | None:
    """The calibration the form describes, in the form ``sensors.calibration`` reads."""
    kind = form.get("cal", "")
    if kind == "linear":
        n = _number_fields(_, form, ("a",), outcome, required=True)
        n |= _number_fields(_, form, ("b",), outcome, required=False)
        return {"linear": [n.get("a", 1.0), n.get("b", 0.0)]}
    if kind == "table":
        return {"table": _points(_, form.get("points", ""), outcome)}
    if kind == "sensor":
        sensor = form.get("sensor", "")
        if sensor not in calibration.PRESETS:
            outcome.errors["sensor"] = _("Choose a sensor of the list.")
            return None
        asked = SENSOR_FIELDS.get(sensor, ())
        needed = tuple(f for f in asked if f != "vref")
        n = _number_fields(_, form, needed, outcome, required=True)
        n |= _number_fields(_, form, tuple(f for f in asked if f == "vref"), outcome,
                            required=False)
        # Parameters the form does not show (adc_max, inverted) stay as they were.
        kept = ({k: v for k, v in saved.items() if k not in ("sensor", *asked)}
                if saved and saved.get("sensor") == sensor else {})
        return {"sensor": sensor, **kept, **n}
    if kind:
        outcome.errors["cal"] = _("Choose a calibration of the list.")
    return None


def read_channel(_: Callable[..., str], form: Mapping[str, str], device: Device,
                 raw: str, lang: str) -> tuple[ChannelSetting | None, Outcome]:
    """The channel setting a channel's form describes, checked by the domain's model and
    by the channel map's rule (a unit its quantity takes), errors by field."""
    outcome = Outcome({k: form.get(k, "") for k in CHANNEL_FIELDS})
    saved = device.settings.channels.get(raw)
    spec = _calibration_spec(_, form, outcome,
                             None if saved is None else saved.calibration)
    name = form.get("name", "").strip()
    quantity = form.get("quantity", "").strip()
    unit = form.get("unit", "").strip()
    if name:
        try:
            check_name(name)
        except UnprintableTextError:
            outcome.errors["name"] = _("Use letters, digits and signs, without control "
                                       "characters.")
    if quantity and quantity not in QUANTITIES:
        outcome.errors["quantity"] = _("Choose a quantity of the list.")
    elif quantity and unit:
        try:  # the domain's model refuses it too; the page says it beside the field
            conversion(QUANTITIES[quantity], unit)
        except UnitError:
            outcome.errors["unit"] = _unit_words(_, QUANTITIES[quantity], lang)
    if outcome.errors:
        return None, outcome
    try:
        setting = ChannelSetting(name=name or None, quantity=quantity or None,
                                 unit=unit or None, calibration=spec)
    except ValidationError as exc:
        for error in exc.errors():
            where = str(error["loc"][0]) if error["loc"] else ""
            if where in ("name", "unit") and error["type"] == "string_too_long":
                outcome.errors[where] = _("This is too long.")
            elif where in ("quantity",):
                outcome.errors["quantity"] = _("Choose a quantity of the list.")
            else:
                text = str(error.get("msg", ""))
                if "quantity" in text:
                    outcome.errors["quantity"] = _("Choose a quantity of the list.")
                    continue
                fallback = {"linear": "a", "table": "points", "sensor": "sensor"}.get(
                    form.get("cal", ""), "cal")
                spot, words = _domain_error(_, text, _CALIBRATION_RULES, fallback)
                outcome.errors.setdefault(spot, words)
        return None, outcome
    try:  # the rule the pipeline applies: the unit must be one its quantity takes
        _route(device, raw, setting)
    except UnitError:
        outcome.errors["unit"] = _unit_words(_, _route_quantity(device, raw, setting), lang)
        return None, outcome
    return setting, outcome


def _unit_words(_: Callable[..., str], quantity: Quantity | None, lang: str) -> str:
    """What to say of a unit that ``quantity`` (None: no known one) cannot take."""
    if quantity is None:
        return _("This unit is not known.")
    return _("This unit does not fit the quantity %(quantity)s: write %(unit)s.",
             quantity=quantity.label(lang), unit=quantity.unit)


def _with_channel(device: Device, raw: str, setting: ChannelSetting) -> registry.DeviceSettings:
    return device.settings.model_copy(
        update={"channels": {**device.settings.channels, raw: setting}})


def _route(device: Device, raw: str, setting: ChannelSetting) -> Any:
    return route_channel(registry.channel_map(_with_channel(device, raw, setting)), raw, None)


def _route_quantity(device: Device, raw: str, setting: ChannelSetting) -> Any:
    quantity = setting.quantity
    if quantity is None and setting.calibration is not None:
        given = calibration.output_of(setting.calibration)
        quantity = None if given is None else given[0]
    return None if quantity is None else QUANTITIES.get(quantity)


@dataclass(frozen=True)
class Preview:
    """A raw value and what the channel's settings make of it."""

    raw: float | None
    value: float | None = None
    unit: str | None = None
    error: str | None = None


def preview_of(_: Callable[..., str], device: Device, raw: str,
               setting: ChannelSetting | None, outcome: Outcome) -> Preview:
    """What the pipeline would store for the form's raw value: the channel map's
    calibration, then its quantity's conversion (sensors.channels.route_channel)."""
    sample_text = outcome.values.get("sample", "").strip()
    if not sample_text:
        return Preview(None)
    try:
        sample = parse_number(sample_text)
    except ValueError:
        outcome.errors.setdefault("sample", _("Write a number, such as 2.5."))
        return Preview(None, error=_("Write a number, such as 2.5."))
    if setting is None:
        return Preview(sample, error=_("Fix the fields marked to see the result."))
    route = _route(device, raw, setting)
    try:
        value = route.calibration(sample) if route.calibration is not None else sample
        value = value * route.spec.scale + route.spec.offset
    except (ArithmeticError, ValueError):
        return Preview(sample, error=_("This calibration gives no number for this value."))
    if not math.isfinite(value):
        return Preview(sample, error=_("This calibration gives no number for this value."))
    return Preview(sample, value, route.spec.unit or route.unit)


def _channel_values(device: Device, raw: str, latest: float | None) -> dict[str, str]:
    """A channel's form as its saved setting fills it."""
    saved = device.settings.channels.get(raw)
    values = dict.fromkeys(CHANNEL_FIELDS, "")
    if latest is not None:
        values["sample"] = _plain(latest)
    if saved is None:
        return values
    values |= {"name": saved.name or "", "quantity": saved.quantity or "",
               "unit": saved.unit or ""}
    spec = saved.calibration
    if spec is None:
        return values
    if "linear" in spec:
        a, b = spec["linear"]
        values |= {"cal": "linear", "a": _plain(a), "b": _plain(b)}
    elif "table" in spec:
        values |= {"cal": "table",
                   "points": "; ".join(f"{_plain(x)} = {_plain(y)}" for x, y in spec["table"])}
    else:
        values |= {"cal": "sensor", "sensor": str(spec.get("sensor", ""))}
        for key in ("vref", "dry", "wet", "r1", "r2"):
            if key in spec:
                values[key] = _plain(spec[key])
    return values


def read_output(_: Callable[..., str], form: Mapping[str, str]
                ) -> tuple[int | None, OutputSetting | None, Outcome]:
    """The output a form describes, checked by the domain's model, errors by field."""
    outcome = Outcome({k: form.get(k, "") for k in (*OUTPUT_FIELDS, "pin")})
    pin: int | None = None
    try:
        pin = int(form.get("pin", "").strip())
        if pin < 0:
            raise ValueError
    except ValueError:
        outcome.errors["pin"] = _("Write the pin's number, such as 9.")
    kind = form.get("kind", "")
    if kind not in OUTPUT_KINDS:
        outcome.errors["kind"] = _("Choose a kind of the list.")
    n = _number_fields(_, form, ("min_angle", "max_angle", "safe"), outcome, required=False)
    label = form.get("label", "").strip()
    if outcome.errors:
        return pin, None, outcome
    try:
        setting = OutputSetting.model_validate({"kind": kind, "label": label or None, **n})
    except ValidationError as exc:
        for error in exc.errors():
            where = str(error["loc"][0]) if error["loc"] else ""
            if where in ("min_angle", "max_angle"):
                outcome.errors[where] = _("An angle goes from 0 to 180.")
            elif where == "label":
                outcome.errors["label"] = _("This is too long.")
            else:
                spot, words = _domain_error(_, str(error.get("msg", "")), _OUTPUT_RULES, "safe")
                outcome.errors.setdefault(spot, words)
        return pin, None, outcome
    return pin, setting, outcome


def _output_values(setting: OutputSetting, pin: int) -> dict[str, str]:
    return {"pin": str(pin), "kind": setting.kind, "label": setting.label or "",
            "min_angle": _plain(setting.min_angle), "max_angle": _plain(setting.max_angle),
            "safe": _plain(setting.safe)}


# -- reading what a page shows ---------------------------------------------------------------

@dataclass(frozen=True)
class ChannelRow:
    """A channel of a device: as sent, as stored, its newest reading."""

    raw: str
    stored: str
    quantity: str | None
    unit: str | None
    latest: queries.Latest | None
    calibrated: bool


def _channels(hub: Hub, device: Device, may_read: Callable[[str | None], bool]
              ) -> list[ChannelRow]:
    """The channels the settings map and those the device sent (stored as sent)."""
    with hub.engine.connect() as conn:
        series = [s for s in queries.list_series(conn=conn, device=device.id)
                  if may_read(s.site)]
        newest = queries.latest(conn=conn, series_ids=[s.id for s in series])
    by_name = {s.channel: s for s in series}
    mapped = device.settings.channels
    renamed = {s.name for s in mapped.values() if s.name}
    rows = []
    for raw in sorted({*mapped, *(c for c in by_name if c not in renamed)}):
        setting = mapped.get(raw)
        stored = (setting.name if setting and setting.name else raw)
        found = by_name.get(stored)
        rows.append(ChannelRow(raw, stored, found.quantity if found else None,
                               found.unit if found else None,
                               newest.get(found.id) if found else None,
                               bool(setting and setting.calibration)))
    return rows


@dataclass(frozen=True)
class Letter:
    """A dead letter as a page shows it (from the API's answer, or the domain's row)."""

    id: str
    received_at: int  # µs
    source: str
    device: str | None
    topic: str | None
    reason: str
    payload: str
    size: int
    truncated: bool
    kind: str | None
    site: str | None
    replayed_at: int | None

    @classmethod
    def of(cls, d: queries.DeadLetter) -> Letter:
        return cls(d.uuid, d.received_at, d.source, d.device, d.topic, d.reason,
                   d.payload.decode("utf-8", "backslashreplace"), d.size, d.truncated,
                   d.kind, d.site, d.replayed_at)

    @classmethod
    def of_api(cls, r: sensors_api.RejectOut) -> Letter:
        return cls(r.id, _us(r.received_at), r.source, r.device, r.topic, r.reason,
                   r.payload or "", r.payload_bytes, r.payload_truncated, r.kind, r.site,
                   None if r.replayed_at is None else _us(r.replayed_at))


def _us(text: str) -> int:
    return rfc3339_us(text)


def _may(request: Request, permission: P, site: str | None) -> bool:
    caller = gated_caller(request)
    return caller.has(permission) and caller.can(permission, site, tree_for(request))


def _device_letters(hub: Hub, request: Request, device_id: str, *, limit: int,
                    offset: int = 0) -> tuple[list[queries.DeadLetter], int, bool]:
    """One device's dead letters among the newest :data:`DEVICE_SCAN_MAX` (the letters'
    query filters by source and topic only), with payloads: (page, matches, scan full)."""
    scope = scope_of(request, P.REJECTS_READ)
    with hub.engine.connect() as conn:
        hidden = None if scope is None else devices_outside(conn, scope)
        if hidden is not None and device_id in hidden:
            return [], 0, False
        heads = queries.list_dead_letters(conn=conn, limit=DEVICE_SCAN_MAX,
                                          with_payload=False)
        found = [(i, d.uuid) for i, d in enumerate(heads) if d.device == device_id]
        page: list[queries.DeadLetter] = []
        for at, uuid in found[offset:offset + limit]:
            got = queries.list_dead_letters(conn=conn, limit=1, offset=at)
            if not got or got[0].uuid != uuid:  # newer letters came meanwhile
                near = queries.list_dead_letters(conn=conn, limit=200, offset=at,
                                                 with_payload=False)
                moved = [i for i, d in enumerate(near) if d.uuid == uuid]
                if not moved:
                    continue
                got = queries.list_dead_letters(conn=conn, limit=1, offset=at + moved[0])
            page.extend(got[:1])
    return page, len(found), len(heads) == DEVICE_SCAN_MAX


# -- the devices ---------------------------------------------------------------------------

def _kind_names(_: Callable[..., str]) -> dict[str, str]:
    return {k: _(v) for k, v in KINDS.items()}


@router.get("/devices", dependencies=[needs(P.DEVICES_READ)])
def devices_page(request: Request, hub: HubDep) -> HTMLResponse:
    """The devices the person may see: status, kind, firmware, last seen, counters."""
    caller = gated_caller(request)
    visible = Visible(request, P.DEVICES_READ)
    hub_site = settings_of(request).site
    counters = (hub.pipeline.counters()
                if _may(request, P.READINGS_READ, hub_site) else None)
    with hub.engine.connect() as conn:
        shown = [d for d in registry.list_devices(conn=conn) if visible(d.site)]
    _ = i18n.gettext_of(pages.language_of(request))
    return pages.render(request, "devices.html", caller=caller, devices=shown,
                        kind_names=_kind_names(_), counters=counters,
                        may_rejects=_may(request, P.REJECTS_READ, hub_site))


@router.get("/devices/{device_id}",
            dependencies=[needs(P.DEVICES_READ, On.path("device", "device_id"))])
def device_page(request: Request, device_id: str, hub: HubDep) -> HTMLResponse:
    """One device: its state, channels with their newest values, counters, dead letters."""
    caller = gated_caller(request)
    with hub.engine.connect() as conn:
        device = registry.get_device(conn=conn, device_id=device_id)
    may_read = Visible(request, P.READINGS_READ) if caller.has(P.READINGS_READ) else None
    channels = _channels(hub, device, may_read) if may_read is not None else []
    hub_site = settings_of(request).site
    letters: list[Letter] | None = None
    if _may(request, P.REJECTS_READ, hub_site):
        letters = [Letter.of(d) for d in
                   _device_letters(hub, request, device_id, limit=RECENT_REJECTS)[0]]
    _ = i18n.gettext_of(pages.language_of(request))
    return pages.render(
        request, "devices_one.html", caller=caller, device=device, channels=channels,
        letters=letters, kind_names=_kind_names(_), source_names=SOURCES,
        known={device.id: device},
        may_configure=_may(request, P.DEVICES_CONFIGURE, device.site),
        may_control=caller.has(P.DEVICES_STOP), shown_chars=PAYLOAD_SHOWN_CHARS,
        unit_text=lambda u: unit_text(u, pages.language_of(request)) if u else None)


# -- the settings --------------------------------------------------------------------------

@dataclass
class SettingsForms:
    """What the settings page shows: each form's values, and the one posted's errors."""

    posted: str | None = None  # "device", "channel:<raw>", "new-channel", "output:<pin>", ...
    outcome: Outcome | None = None
    preview: Preview | None = None
    conflict: bool = False
    saved: str | None = None


def _settings_page(request: Request, hub: Hub, device: Device, forms: SettingsForms,
                   *, status: int = 200) -> HTMLResponse:
    caller = gated_caller(request)
    lang = pages.language_of(request)
    _ = i18n.gettext_of(lang)
    channels = _channels(hub, device, Visible(request, P.READINGS_READ))
    scope = scope_of(request, P.DEVICES_CONFIGURE)
    with hub.engine.connect() as conn:
        choices = inventory_sites.list_sites(conn=conn, only=scope)
    channel_forms = []
    for row in channels:
        latest = None if row.calibrated or row.latest is None else row.latest.value
        key = f"channel:{row.raw}"
        if forms.posted == key and forms.outcome is not None:
            channel_forms.append({"key": key, "row": row, "values": forms.outcome.values,
                                  "errors": forms.outcome.errors, "preview": forms.preview})
            continue
        drawn = Outcome(_channel_values(device, row.raw, latest))
        saved = device.settings.channels.get(row.raw) or ChannelSetting()
        channel_forms.append({"key": key, "row": row, "values": drawn.values, "errors": {},
                              "preview": preview_of(_, device, row.raw, saved, drawn)})
    outputs = []
    for pin, setting in sorted(device.settings.firmata.outputs.items()):
        key = f"output:{pin}"
        mine = forms.posted == key and forms.outcome is not None
        outputs.append({"key": key, "pin": pin,
                        "values": forms.outcome.values if mine and forms.outcome else
                        _output_values(setting, pin),
                        "errors": forms.outcome.errors if mine and forms.outcome else {}})

    def posted(key: str, defaults: dict[str, str]) -> dict[str, Any]:
        if forms.posted == key and forms.outcome is not None:
            return {"values": forms.outcome.values, "errors": forms.outcome.errors,
                    "preview": forms.preview}
        return {"values": defaults, "errors": {}, "preview": None}

    new_output = posted("new-output", {"kind": "servo", "min_angle": "0",
                                       "max_angle": "180", "safe": "90"})
    new_channel = posted("new-channel", dict.fromkeys(CHANNEL_FIELDS, ""))
    sampling = posted("sampling", _sampling_values(device.settings.firmata.sample_every_s))
    general = posted("device", {"name": device.name, "site": device.site or ""})
    return pages.render(
        request, "devices_settings.html", status=status, caller=caller, device=device,
        version=settings_version(device), forms=forms, general=general,
        channel_forms=channel_forms, new_channel=new_channel, outputs=outputs,
        new_output=new_output, sites=choices, sampling=sampling,
        is_firmata=device.kind == FIRMATA_SOURCE,
        sampling_ms=device.settings.firmata.sampling_ms,
        sampling_units={k: _(v) for k, (v, _s) in SAMPLING_UNITS.items()},
        may_unsited=scope is None or settings_of(request).site in scope,
        quantities=sorted(((q.key, q.label(lang)) for q in QUANTITIES.values()),
                          key=lambda kv: kv[1]),
        calibrations={k: _(v) for k, v in CALIBRATIONS.items()},
        sensors={k: _(v) for k, v in SENSORS.items()},
        output_kinds={k: _(v) for k, v in OUTPUT_KINDS.items()},
        unit_text=lambda u: unit_text(u, lang) if u else "")


SETTINGS_GATE: Final = needs(P.DEVICES_CONFIGURE, On.path("device", "device_id"))


@router.get("/devices/{device_id}/settings", dependencies=[SETTINGS_GATE])
def settings_page(request: Request, device_id: str, hub: HubDep,
                  saved: Annotated[str | None, Query(max_length=20)] = None) -> HTMLResponse:
    """A device's settings: name and site, channel map with calibrations, outputs."""
    with hub.engine.connect() as conn:
        device = registry.get_device(conn=conn, device_id=device_id)
    return _settings_page(request, hub, device, SettingsForms(saved=saved))


def _patch(request: Request, hub: Hub, device_id: str, **changes: Any) -> None:
    """The API's own change of a device (checks, audit log, the board reopened)."""
    devices_api.patch_device(device_id, devices_api.DevicePatch(**changes), hub, request)


def _save_device(_: Callable[..., str], request: Request, hub: Hub, device: Device,
                 form: Mapping[str, str]) -> Outcome:
    outcome = Outcome({"name": form.get("name", ""), "site": form.get("site", "")})
    name = outcome.values["name"].strip()
    site = outcome.values["site"].strip() or None
    if not name:
        outcome.errors["name"] = _("Write a name for the device.")
        return outcome
    try:
        changes = devices_api.DevicePatch(name=name, site=site)
    except ValidationError as exc:
        for error in exc.errors():
            where = str(error["loc"][0]) if error["loc"] else "name"
            outcome.errors[where] = (
                _("A name has at most %(limit)s characters, without control characters.",
                  limit=200) if where == "name" else _("Choose a site of the list."))
        return outcome
    try:
        _patch(request, hub, device.id, **changes.model_dump(exclude_unset=True))
    except Forbidden:
        outcome.errors["site"] = _("You may not place devices at this site.")
    except RegistryError as exc:
        if "site" in str(exc):
            outcome.errors["site"] = _("Choose a site of the list.")
        else:
            outcome.errors["name"] = _("A name has at most %(limit)s characters, without "
                                       "control characters.", limit=200)
    return outcome


def _channel_map_of(device: Device, raw: str, setting: ChannelSetting | None
                    ) -> dict[str, Any]:
    channels = {k: v.model_dump(mode="json", exclude_none=True)
                for k, v in device.settings.channels.items()}
    if setting is None:
        channels.pop(raw, None)
    else:
        channels[raw] = setting.model_dump(mode="json", exclude_none=True)
    return {"channels": channels}


def _outputs_of(device: Device, pin: int, setting: OutputSetting | None) -> dict[str, Any]:
    firmata = device.settings.firmata.model_dump(mode="json")
    outputs = {str(k): v.model_dump(mode="json") for k, v in
               device.settings.firmata.outputs.items()}
    if setting is None:
        outputs.pop(str(pin), None)
    else:
        outputs[str(pin)] = setting.model_dump(mode="json")
    return {"firmata": {**firmata, "outputs": outputs}}


# Slow sampling of a Firmata board (``firmata.sample_every_s``), said in a unit people
# think in: a climate log every 10 minutes, not every 600 seconds.
SAMPLING_UNITS: Final = {"s": (N_("seconds"), 1), "min": (N_("minutes"), 60),
                         "h": (N_("hours"), 3600)}


def _sampling_values(every_s: int | None) -> dict[str, str]:
    if every_s is None:
        return {"mode": "continuous", "every": "", "unit": "min"}
    unit = next(u for u in ("h", "min", "s") if every_s % SAMPLING_UNITS[u][1] == 0)
    return {"mode": "slow", "every": str(every_s // SAMPLING_UNITS[unit][1]), "unit": unit}


def read_sampling(_: Callable[..., str], form: Mapping[str, str]
                  ) -> tuple[int | None, Outcome]:
    """The sampling form: continuous (None) or one sample every N seconds."""
    outcome = Outcome({"mode": form.get("mode", ""), "every": form.get("every", "").strip(),
                       "unit": form.get("unit", "")})
    values = outcome.values
    if values["mode"] == "continuous":
        return None, outcome
    if values["mode"] != "slow" or values["unit"] not in SAMPLING_UNITS:
        outcome.errors["mode"] = _("Choose how often the board reads.")
        return None, outcome
    count = int(values["every"]) if values["every"].isdigit() else 0
    every_s = count * SAMPLING_UNITS[values["unit"]][1]
    try:  # the registry's own bounds (1 s to a day)
        FirmataSettings(sample_every_s=every_s)
    except ValidationError:
        outcome.errors["every"] = _("Write a whole number: from one second to one day "
                                    "(24 hours).")
    return every_s, outcome


def _sampling_of(device: Device, every_s: int | None) -> dict[str, Any]:
    firmata = device.settings.firmata.model_dump(mode="json")
    return {"firmata": {**firmata, "sample_every_s": every_s}}


def _channel_key(_: Callable[..., str], raw: str, outcome: Outcome) -> None:
    if not raw:
        outcome.errors["channel"] = _("Write the channel's name as the device sends it.")
        return
    try:
        check_name(raw)
    except UnprintableTextError:
        outcome.errors["channel"] = _("Use letters, digits and signs, without control "
                                      "characters.")
    if len(raw) > 200:
        outcome.errors["channel"] = _("This is too long.")


def _handle(request: Request, hub: Hub, device_id: str, form: Mapping[str, str]
            ) -> Response:
    lang = pages.language_of(request)
    _ = i18n.gettext_of(lang)
    with hub.engine.connect() as conn:
        device = registry.get_device(conn=conn, device_id=device_id)
    action = form.get("action", "")
    preview_only = action == "preview"
    if not preview_only and form.get("version") != settings_version(device):
        return _settings_page(request, hub, device, SettingsForms(conflict=True), status=409)
    here = f"{pages._root(request)}/devices/{device_id}/settings"
    forms = SettingsForms()
    kind = form.get("form", "")
    if kind == "device" and action == "save":
        outcome = _save_device(_, request, hub, device, form)
        if not outcome.errors:
            return RedirectResponse(here + "?saved=device", status_code=303)
        forms = SettingsForms("device", outcome)
    elif kind in ("channel", "new-channel") and action in ("save", "preview", "remove"):
        raw = form.get("channel", "").strip()
        if action == "remove":
            if raw in device.settings.channels:
                _patch(request, hub, device_id, settings=_channel_map_of(device, raw, None))
            return RedirectResponse(here + "?saved=channel", status_code=303)
        setting, outcome = read_channel(_, form, device, raw or "_", lang)
        outcome.values["channel"] = raw
        if kind == "new-channel":
            _channel_key(_, raw, outcome)
            if raw in device.settings.channels and "channel" not in outcome.errors:
                outcome.errors["channel"] = _("This channel is in the list already.")
        key = "new-channel" if kind == "new-channel" else f"channel:{raw}"
        preview = preview_of(_, device, raw or "_", setting, outcome)
        if action == "save" and setting is not None and not outcome.errors:
            _patch(request, hub, device_id, settings=_channel_map_of(device, raw, setting))
            return RedirectResponse(here + "?saved=channel", status_code=303)
        forms = SettingsForms(key, outcome, preview)
    elif kind in ("output", "new-output") and action in ("save", "remove"):
        pin, output, outcome = read_output(_, form)
        key = "new-output" if kind == "new-output" else f"output:{form.get('pin', '')}"
        if action == "remove" and pin is not None:
            _patch(request, hub, device_id, settings=_outputs_of(device, pin, None))
            return RedirectResponse(here + "?saved=output", status_code=303)
        if kind == "new-output" and pin in device.settings.firmata.outputs:
            outcome.errors["pin"] = _("This pin is in the list already.")
        if output is not None and pin is not None and not outcome.errors:
            _patch(request, hub, device_id, settings=_outputs_of(device, pin, output))
            return RedirectResponse(here + "?saved=output", status_code=303)
        forms = SettingsForms(key, outcome)
    elif kind == "sampling" and action == "save" and device.kind == FIRMATA_SOURCE:
        every_s, outcome = read_sampling(_, form)
        if not outcome.errors:
            _patch(request, hub, device_id, settings=_sampling_of(device, every_s))
            return RedirectResponse(here + "?saved=sampling", status_code=303)
        forms = SettingsForms("sampling", outcome)
    else:
        return _settings_page(request, hub, device, SettingsForms(), status=400)
    status = 422 if forms.outcome is not None and forms.outcome.errors else 200
    return _settings_page(request, hub, device, forms, status=status)


@router.post("/devices/{device_id}/settings", dependencies=[SETTINGS_GATE])
async def settings_form(request: Request, device_id: str, hub: HubDep) -> Response:
    """One of the settings page's forms: saved through the API's change, or shown again
    with its errors beside their fields (422), or 409 when the device changed meanwhile."""
    form = await pages.signed_form(request)
    return await run_in_threadpool(_handle, request, hub, device_id, form)


@router.post("/devices/{device_id}/settings/preview", dependencies=[SETTINGS_GATE])
async def preview_fragment(request: Request, device_id: str, hub: HubDep) -> HTMLResponse:
    """A channel form's raw value as its calibration would store it (an htmx fragment)."""
    form = await pages.signed_form(request)

    def work() -> HTMLResponse:
        lang = pages.language_of(request)
        _ = i18n.gettext_of(lang)
        with hub.engine.connect() as conn:
            device = registry.get_device(conn=conn, device_id=device_id)
        raw = form.get("channel", "").strip() or "_"
        setting, outcome = read_channel(_, form, device, raw, lang)
        preview = preview_of(_, device, raw, setting, outcome)
        return pages.render(request, "devices_preview.html", preview=preview,
                            errors=outcome.errors,
                            unit_text=lambda u: unit_text(u, lang) if u else "")

    return await run_in_threadpool(work)


# -- dead letters --------------------------------------------------------------------------

@router.get("/rejects", dependencies=[needs(P.REJECTS_READ, On.HUB)])
def rejects_page(
    request: Request, hub: HubDep,
    source: Annotated[str | None, Query(max_length=20)] = None,
    device: Annotated[str | None, Query(max_length=200)] = None,
    page: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 1,
    stored: Annotated[int | None, Query(ge=0)] = None,
    still: Annotated[int | None, Query(ge=0)] = None,
) -> HTMLResponse:
    """Dead letters the person may read, newest first, with each payload escaped."""
    caller = gated_caller(request)
    source = source or None
    device = device or None
    if source is not None and source not in SOURCES:
        source = None
    offset = (page - 1) * REJECTS_PER_PAGE
    partial = False
    if device is not None:
        found_letters, total, partial = _device_letters(hub, request, device,
                                                        limit=REJECTS_PER_PAGE, offset=offset)
        letters = [Letter.of(d) for d in found_letters
                   if source is None or d.source == source]
    else:
        with hub.engine.connect() as conn:
            found = sensors_api.list_rejects(request, conn, source=source,
                                             limit=REJECTS_PER_PAGE, offset=offset,
                                             with_payload=True)
        total = found.total
        letters = [Letter.of_api(r) for r in found.items]
    visible = Visible(request, P.DEVICES_READ) if caller.has(P.DEVICES_READ) else None
    with hub.engine.connect() as conn:
        known = {d.id: d for d in registry.list_devices(conn=conn)
                 if visible is not None and visible(d.site)}
    hub_site = settings_of(request).site
    replayable = any(d.kind == "unknown_site" and d.replayed_at is None for d in letters)
    pages_count = max(1, -(-total // REJECTS_PER_PAGE))
    kept = {k: v for k, v in (("source", source), ("device", device)) if v}
    return pages.render(
        request, "rejects.html", caller=caller, letters=letters, total=total, page=page,
        pages_count=pages_count, source=source, device=device, partial=partial,
        source_names=SOURCES, known=known, shown_chars=PAYLOAD_SHOWN_CHARS,
        may_replay=_may(request, P.READINGS_INGEST, hub_site), replayable=replayable,
        scan_max=DEVICE_SCAN_MAX, stored=stored, still=still,
        link=lambda n: "?" + urlencode({**kept, "page": n}))


@router.post("/rejects/replay", dependencies=[needs(P.READINGS_INGEST, On.HUB)])
async def replay_form(request: Request, hub: HubDep) -> Response:
    """The API's replay of the dead letters refused for a site the inventory lacked."""
    await pages.signed_form(request)
    done = await run_in_threadpool(sensors_api.replay_rejects, sensors_api.ReplayIn(), hub)
    return RedirectResponse(f"{pages._root(request)}/rejects?" + urlencode(
        {"stored": done.stored, "still": done.still_refused}), status_code=303)


