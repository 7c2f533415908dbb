"""The catalog: item models, each in a category and either serialized or counted.

A serialized model (an Arduino Uno R3, a 3D printer, a laptop) has individual assets,
each with an asset tag and perhaps a maker's serial number. A counted model (jumper
wires, LEDs, filament) is kept as a quantity in a unit, per site (``inventory.stock``).
A coordinator corrects a model's name, category or unit with :func:`edit_model`, guarded
by its ``version``; a retired model (``inventory.corrections``) gets no new assets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from sqlalchemy import Connection, insert, select

from inventory.errors import (
    ConflictError,
    InvalidTransitionError,
    InvalidValueError,
    NotFoundError,
)
from inventory.history import record_event
from inventory.tables import models
from inventory.values import check_choice, check_key, check_note, check_text
from inventory.versions import check_version, write_versioned

Category = Literal[
    "robotics_kit",
    "microcontroller_board",
    "sensor_module",
    "actuator",
    "3d_printer",
    "computer",
    "tablet",
    "tool",
    "consumable",
]
Tracking = Literal["serialized", "counted"]
CATEGORIES: tuple[str, ...] = get_args(Category)
TRACKINGS: tuple[str, ...] = get_args(Tracking)
UNIT_MAX = 20  # "pcs", "m", "kg", "spools"
# What :func:`edit_model` may change: not the code (the stable key) nor the tracking (its
# assets or stock would no longer fit it).
EDITABLE_FIELDS = ("name", "category", "unit")


@dataclass(frozen=True, slots=True)
class Model:
    """An item model of the catalog."""

    code: str
    name: str
    category: str
    tracking: str
    unit: str | None
    version: int = 1  # +1 on every change (optimistic concurrency)
    retired_at: int | None = None  # when it was retired; None while in use


def _model(r: Any) -> Model:
    return Model(r.code, r.name, r.category, r.tracking, r.unit, r.version, r.retired_at)


def check_model_version(model: Model, expected_version: int | None) -> None:
    """StaleVersionError if the writer read another version of ``model`` than is stored."""
    check_version(what="model", key=model.code, version=model.version,
                  expected_version=expected_version)


def write_model(*, conn: Connection, model: Model, **values: Any) -> None:
    """Store changed fields of ``model`` (read in this transaction) and bump its version;
    StaleVersionError if another transaction changed it in between."""
    write_versioned(conn=conn, table=models, what="model", key=model.code,
                    version=model.version, **values)


def check_model_in_use(model: Model, *, doing: str) -> None:
    """InvalidTransitionError if ``model`` was retired from the catalog."""
    if model.retired_at is not None:
        raise InvalidTransitionError(f"model {model.code!r} is retired from the catalog: "
                                     f"{doing}")


def find_model(*, conn: Connection, code: str) -> Model | None:
    """The model with ``code``, or None."""
    row = conn.execute(select(models).where(models.c.code == code)).first()
    return None if row is None else _model(row)


def get_model(*, conn: Connection, code: str) -> Model:
    """The model with ``code``; NotFoundError if the catalog has none."""
    model = find_model(conn=conn, code=code)
    if model is None:
        raise NotFoundError(f"no model with code {code!r} in the catalog", what="model", key=code)
    return model


# -- the rules of a model's fields: one function each, called by create_model and by the CSV
# import (inventory.csvio.importing) for every row, so the two cannot drift.


def check_model_code(code: str) -> str:
    """``code`` as a model code (a stable key); InvalidValueError if malformed."""
    return check_key(code, what="model code")


def check_model_name(name: str, *, code: str | None) -> str:
    """A model's name, stripped; InvalidValueError if empty or too long."""
    return check_text(name, what=f"the name of model {code!r}")


def check_category(category: str, *, code: str | None) -> str:
    """``category`` if it is one of :data:`CATEGORIES`, else InvalidValueError naming them."""
    return check_choice(category, CATEGORIES, what=f"the category of model {code!r}")


def check_tracking(tracking: str, *, code: str | None) -> str:
    """``tracking`` if it is ``serialized`` or ``counted``, else InvalidValueError."""
    return check_choice(tracking, TRACKINGS, what=f"the tracking of model {code!r}")


def check_unit(unit: str | None, *, code: str | None, tracking: str) -> str | None:
    """A model's unit: a counted model needs one (``pcs``, ``m``), a serialized one has none
    (each asset is one item); InvalidValueError otherwise."""
    if tracking == "counted":
        if unit is None:
            raise InvalidValueError(f"counted model {code!r} needs a unit, e.g. 'pcs'")
        return check_text(unit, what=f"the unit of model {code!r}", max_len=UNIT_MAX)
    if unit is not None:
        raise InvalidValueError(f"serialized model {code!r} has no unit: each asset is one item")
    return None


def create_model(
    *,
    conn: Connection,
    code: str,
    name: str,
    category: Category,
    by: str,
    tracking: Tracking = "serialized",
    unit: str | None = None,
) -> Model:
    """Add a model to the catalog; a counted model needs a unit. Writes ModelCreated."""
    code = check_model_code(code)
    name = check_model_name(name, code=code)
    check_category(category, code=code)
    check_tracking(tracking, code=code)
    unit = check_unit(unit, code=code, tracking=tracking)
    existing = find_model(conn=conn, code=code)
    if existing is not None:
        raise ConflictError(
            f"model code {code!r} is already in the catalog ({existing.name}, {existing.category})"
        )
    values = {"code": code, "name": name, "category": category, "tracking": tracking,
              "unit": unit}
    conn.execute(insert(models).values(**values))
    record_event(
        conn=conn, kind="ModelCreated", subject=code, by=by,
        to_state={k: v for k, v in values.items() if v is not None},
    )
    return get_model(conn=conn, code=code)


def list_models(*, conn: Connection, category: Category | None = None) -> list[Model]:
    """Catalog models by code, optionally of one category."""
    query = select(models).order_by(models.c.code)
    if category is not None:
        check_choice(category, CATEGORIES, what="category")
        query = query.where(models.c.category == category)
    return [_model(r) for r in conn.execute(query)]


def edit_model(
    *,
    conn: Connection,
    code: str,
    changes: Mapping[str, Any],
    by: str,
    note: str | None = None,
    expected_version: int | None = None,
) -> Model:
    """Correct a model: ``changes`` maps fields of :data:`EDITABLE_FIELDS` to new values and
    only those change, each checked as in :func:`create_model`. Writes ModelEdited with the
    changed fields before and after and raises the version; no change writes nothing."""
    model = get_model(conn=conn, code=code)
    check_model_version(model, expected_version)
    unknown = sorted(set(changes) - set(EDITABLE_FIELDS))
    if unknown:
        raise InvalidValueError(
            f"model {code!r}: {', '.join(unknown)} cannot be edited (editable: "
            f"{', '.join(EDITABLE_FIELDS)}; a model of another tracking is a new model)")
    new = {k: v for k, v in changes.items() if getattr(model, k) != v}
    if "name" in new:
        new["name"] = check_model_name(new["name"], code=code)
    if "category" in new:
        check_category(new["category"], code=code)
    if "unit" in new:
        new["unit"] = check_unit(new["unit"], code=code, tracking=model.tracking)
    new = {k: v for k, v in new.items() if getattr(model, k) != v}
    if not new:
        return model
    record_event(conn=conn, kind="ModelEdited", subject=code, by=by,
                 from_state={k: getattr(model, k) for k in new}, to_state=new,
                 note=check_note(note))
    write_model(conn=conn, model=model, **new)
    return get_model(conn=conn, code=code)
