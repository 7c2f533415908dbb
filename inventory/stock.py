"""Counted stock: how much of a counted model (jumper wires, LEDs, filament) each lab
site holds, with a reorder threshold per site and model, and the reorder report.

Stock changes only through these services, each writing its event on the model's
history with the site: ``StockReceived`` (a delivery), ``StockConsumed`` (used up, or
lost from a kit), ``StockAdjusted`` (a recount sets the quantity) and
``ReorderThresholdSet``. Each event carries the new quantity, so the stock can be
rebuilt from history (``history.rebuild_stock``). A quantity never goes below zero; a
(site, model) pair has a row from its first receipt, count or threshold. The site's
stock includes the parts inside its kits: a kit that comes back short lowers it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, Connection, bindparam, func, insert, select, update

from inventory.assets import lab_site
from inventory.catalog import Model, get_model
from inventory.errors import InvalidValueError, StaleVersionError
from inventory.history import NewEvent, record_event, record_events
from inventory.sites import get_site, subtree
from inventory.tables import models, stock
from inventory.values import check_page

DEFAULT_LIMIT = 50  # rows per page when the caller does not say: a screenful
MAX_LIMIT = 500  # one page of a list; more is paged with offset
QUANTITY_MAX = 10_000_000  # a sanity bound on one movement: no lab counts beyond this


@dataclass(frozen=True, slots=True)
class StockLevel:
    """How much of a counted model a lab site holds."""

    site_code: str
    model_code: str
    quantity: int
    unit: str
    reorder_threshold: int | None
    version: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class ReorderLine:
    """A (site, model) below its reorder threshold, and how many are missing to reach it."""

    site_code: str
    model_code: str
    unit: str
    on_hand: int
    threshold: int
    shortfall: int


def _counted(conn: Connection, model_code: str) -> Model:
    model = get_model(conn=conn, code=model_code)
    if model.tracking != "counted":
        raise InvalidValueError(
            f"model {model_code!r} is tracked as tagged assets, not counted in stock"
        )
    return model


def _quantity(value: int, *, what: str, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValueError(f"{what} must be a whole number, not {value!r}")
    if value < (0 if allow_zero else 1) or value > QUANTITY_MAX:
        low = 0 if allow_zero else 1
        raise InvalidValueError(f"{what} {value} is not in {low}..{QUANTITY_MAX}")
    return value


def _row(conn: Connection, site_code: str, model_code: str) -> Any:
    return conn.execute(
        select(stock).where(stock.c.site_code == site_code, stock.c.model_code == model_code)
    ).first()


def get_stock(*, conn: Connection, site_code: str, model_code: str) -> StockLevel:
    """The stock of a counted model at a lab site (0 if nothing was ever counted there)."""
    model = _counted(conn, model_code)
    lab_site(conn=conn, code=site_code)
    row = _row(conn, site_code, model_code)
    if row is None:
        return StockLevel(site_code, model_code, 0, model.unit or "", None, 0, 0)
    return StockLevel(site_code, model_code, row.quantity, model.unit or "",
                      row.reorder_threshold, row.version, row.updated_at)


def _write(
    *,
    conn: Connection,
    level: StockLevel,
    kind: Literal["StockReceived", "StockConsumed", "StockAdjusted", "ReorderThresholdSet"],
    by: str,
    quantity: int | None = None,
    threshold: int | None = None,
    set_threshold: bool = False,
    note: str | None = None,
    expected_version: int | None = None,
    on_behalf_of: str | None = None,
) -> StockLevel:
    if expected_version is not None and expected_version != level.version:
        raise StaleVersionError(what="stock", key=f"{level.site_code}/{level.model_code}",
                                expected=expected_version, actual=level.version)
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    if quantity is not None:
        before["quantity"], after["quantity"] = level.quantity, quantity
    if set_threshold:
        before["reorder_threshold"], after["reorder_threshold"] = (
            level.reorder_threshold, threshold)
    if level.version == 0:  # no row yet: the event starts the pair's history at 0
        after.setdefault("quantity", 0)
    event = record_event(
        conn=conn, kind=kind, subject=level.model_code, by=by, site_code=level.site_code,
        from_state=before, to_state=after, note=note, on_behalf_of=on_behalf_of,
    )
    values = dict(after)
    if level.version == 0:
        conn.execute(insert(stock).values(
            site_code=level.site_code, model_code=level.model_code,
            quantity=values.get("quantity", 0), reorder_threshold=values.get("reorder_threshold"),
            version=1, updated_at=event.at,
        ))
    else:
        done = conn.execute(
            update(stock)
            .where(stock.c.site_code == level.site_code, stock.c.model_code == level.model_code,
                   stock.c.version == level.version)
            .values(version=level.version + 1, updated_at=event.at, **values)
        )
        if done.rowcount != 1:
            raise StaleVersionError(what="stock", key=f"{level.site_code}/{level.model_code}",
                                    expected=level.version, actual=level.version + 1)
    return get_stock(conn=conn, site_code=level.site_code, model_code=level.model_code)


def receive(
    *, conn: Connection, site_code: str, model_code: str, quantity: int, by: str,
    note: str | None = None,
) -> StockLevel:
    """Add a delivery of ``quantity`` to a site's stock. Writes StockReceived."""
    quantity = _quantity(quantity, what=f"the quantity of {model_code} received")
    level = get_stock(conn=conn, site_code=site_code, model_code=model_code)
    return _write(conn=conn, level=level, kind="StockReceived", by=by,
                  quantity=level.quantity + quantity, note=note)


def consume(
    *, conn: Connection, site_code: str, model_code: str, quantity: int, by: str,
    note: str | None = None, on_behalf_of: str | None = None,
) -> StockLevel:
    """Take ``quantity`` out of a site's stock (used up); more than it holds is refused.

    Writes StockConsumed.
    """
    quantity = _quantity(quantity, what=f"the quantity of {model_code} consumed")
    level = get_stock(conn=conn, site_code=site_code, model_code=model_code)
    if quantity > level.quantity:
        raise InvalidValueError(
            f"site {site_code!r} holds {level.quantity} {level.unit} of {model_code}, "
            f"so {quantity} cannot be consumed"
        )
    return _write(conn=conn, level=level, kind="StockConsumed", by=by,
                  quantity=level.quantity - quantity, note=note, on_behalf_of=on_behalf_of)


def adjust(
    *, conn: Connection, site_code: str, model_code: str, quantity: int, by: str,
    note: str | None = None, expected_version: int | None = None,
) -> StockLevel:
    """Set a site's stock to a recounted ``quantity``. Writes StockAdjusted."""
    quantity = _quantity(quantity, what=f"the counted quantity of {model_code}",
                         allow_zero=True)
    level = get_stock(conn=conn, site_code=site_code, model_code=model_code)
    return _write(conn=conn, level=level, kind="StockAdjusted", by=by, quantity=quantity,
                  note=note, expected_version=expected_version)


def set_reorder_threshold(
    *, conn: Connection, site_code: str, model_code: str, threshold: int | None, by: str,
    expected_version: int | None = None,
) -> StockLevel:
    """Reorder ``model_code`` at a site when its stock falls below ``threshold`` (None:
    never). Writes ReorderThresholdSet."""
    if threshold is not None:
        threshold = _quantity(threshold, what=f"the reorder threshold of {model_code}")
    level = get_stock(conn=conn, site_code=site_code, model_code=model_code)
    return _write(conn=conn, level=level, kind="ReorderThresholdSet", by=by,
                  threshold=threshold, set_threshold=True, expected_version=expected_version)


def lower_for_losses(
    *, conn: Connection, site_code: str, losses: Mapping[str, int], by: str, note: str,
    on_behalf_of: str | None = None,
) -> None:
    """Take parts lost or damaged from a kit (counted model code: how many) out of the
    lab site's stock, each down to zero at most (a site that never counted its loose parts
    has nothing more to lower), in a few round trips. Writes StockConsumed for each
    model, with the note. The caller has checked the site and that the models are counted."""
    codes = sorted(code for code, quantity in losses.items() if quantity > 0)
    if not codes:
        return
    rows = {r.model_code: r for r in conn.execute(
        select(stock).where(stock.c.site_code == site_code, stock.c.model_code.in_(codes)))}
    new: list[NewEvent] = []
    for code in codes:
        had = rows[code].quantity if code in rows else 0
        new.append(NewEvent("StockConsumed", code, site_code, {"quantity": had},
                            {"quantity": max(had - losses[code], 0)}, note))
    written = record_events(conn=conn, new=new, by=by, on_behalf_of=on_behalf_of)
    fresh = [
        {"site_code": site_code, "model_code": e.subject, "quantity": 0,
         "reorder_threshold": None, "version": 1, "updated_at": e.at}
        for e in written if e.subject not in rows
    ]
    if fresh:
        conn.execute(insert(stock), fresh)
    changed = [
        {"b_model": e.subject, "b_version": rows[e.subject].version,
         "b_new": rows[e.subject].version + 1, "b_quantity": (e.to_state or {})["quantity"],
         "b_at": e.at}
        for e in written if e.subject in rows
    ]
    if changed:
        done = conn.execute(
            update(stock)
            .where(stock.c.site_code == site_code, stock.c.model_code == bindparam("b_model"),
                   stock.c.version == bindparam("b_version"))
            .values(quantity=bindparam("b_quantity"), version=bindparam("b_new"),
                    updated_at=bindparam("b_at")),
            changed,
        )
        if done.rowcount != len(changed):
            now = {r.model_code: r.version for r in conn.execute(
                select(stock).where(stock.c.site_code == site_code,
                                    stock.c.model_code.in_(codes)))}
            stale = next(c for c in changed if now.get(c["b_model"]) != c["b_new"])
            raise StaleVersionError(what="stock", key=f"{site_code}/{stale['b_model']}",
                                    expected=stale["b_version"],
                                    actual=now.get(stale["b_model"], 0))


def _conditions(
    conn: Connection, site_under: str | None, model_code: str | None,
    sites: Collection[str] | None = None,
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if site_under is not None:
        get_site(conn=conn, code=site_under)
        conditions.append(stock.c.site_code.in_(select(subtree(site_under).c.code)))
    if sites is not None:
        conditions.append(stock.c.site_code.in_(sorted(sites)))
    if model_code is not None:
        get_model(conn=conn, code=model_code)
        conditions.append(stock.c.model_code == model_code)
    return conditions


def list_stock(
    *,
    conn: Connection,
    site_under: str | None = None,
    model_code: str | None = None,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
    sites: Collection[str] | None = None,
) -> tuple[int, list[StockLevel]]:
    """A page of stock levels by site and model, and how many match in all; ``site_under``
    takes a site and its whole subtree; ``sites``, when given, keeps only those sites
    (where the person asking may look), the total too."""
    check_page(limit, offset, MAX_LIMIT)
    conditions = _conditions(conn, site_under, model_code, sites)
    total = conn.execute(select(func.count()).select_from(stock).where(*conditions)).scalar_one()
    rows = conn.execute(
        select(stock).where(*conditions).order_by(stock.c.site_code, stock.c.model_code)
        .limit(limit).offset(offset)
    ).all()
    units = _units(conn, {r.model_code for r in rows})
    return total, [
        StockLevel(r.site_code, r.model_code, r.quantity, units[r.model_code],
                   r.reorder_threshold, r.version, r.updated_at)
        for r in rows
    ]


def _units(conn: Connection, codes: set[str]) -> dict[str, str]:
    rows = conn.execute(select(models.c.code, models.c.unit).where(models.c.code.in_(codes)))
    return {r.code: r.unit or "" for r in rows}


def reorder_report(
    *, conn: Connection, site_under: str | None = None, model_code: str | None = None,
    limit: int = MAX_LIMIT, offset: int = 0, sites: Collection[str] | None = None,
) -> tuple[int, list[ReorderLine]]:
    """A page of every (site, model) whose stock is below its reorder threshold, by site
    and model, with the shortfall (threshold minus what is on hand), and how many in all;
    ``sites``, when given, keeps only those sites, the total too."""
    check_page(limit, offset, MAX_LIMIT)
    conditions = [stock.c.reorder_threshold.is_not(None),
                  stock.c.quantity < stock.c.reorder_threshold,
                  *_conditions(conn, site_under, model_code, sites)]
    total = conn.execute(select(func.count()).select_from(stock).where(*conditions)).scalar_one()
    rows = conn.execute(
        select(stock).where(*conditions).order_by(stock.c.site_code, stock.c.model_code)
        .limit(limit).offset(offset)
    ).all()
    units = _units(conn, {r.model_code for r in rows})
    return total, [
        ReorderLine(r.site_code, r.model_code, units[r.model_code], r.quantity,
                    r.reorder_threshold, r.reorder_threshold - r.quantity)
        for r in rows
    ]
