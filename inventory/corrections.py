"""Corrections: deleting a record made in error, and retiring one that was used.

A site, catalog model or asset (a kit is an asset) that was created by mistake and never
used, with no history since its creation and nothing that names it (no assets, loans,
stock, transfers, kit contents, children ...), is deleted: its row goes, and the history
keeps a tombstone (``SiteDeleted``, ``ModelDeleted``, ``AssetDeleted``: what it was, who
deleted it and when). Anything that was used is never deleted; deleting it is an
:class:`~inventory.errors.InUseError` (409) that lists what uses it and says how to retire
it. Retiring keeps the record and its history: a retired site or model takes nothing new
(no assets registered or moved there, nothing added under it, no new assets of the model),
and a retired asset is the ``retired`` status of :mod:`inventory.assets`.

Uses the inventory cannot see (a site's devices, reading series and runs, kept by the
readings side) are passed in by the caller as ``other_uses``, in words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from sqlalchemy import Connection, delete, func, or_, select

from inventory import assets as asset_records
from inventory.catalog import Model, check_model_version, get_model, write_model
from inventory.errors import ConflictError, InUseError, InvalidTransitionError
from inventory.history import CREATION_EVENTS, Event, history_of, record_event
from inventory.sites import Site, check_site_version, get_site, write_site
from inventory.tables import (
    assets,
    audit_counts,
    audit_findings,
    audit_scans,
    audits,
    events,
    kit_contents,
    kit_losses,
    loan_items,
    loans,
    locations,
    manifest_items,
    models,
    repairs,
    rotation_stops,
    rotations,
    sites,
    stock,
    transfer_items,
    transfer_scans,
    transfers,
)
from inventory.values import check_note

DELETED_EVENTS = ("SiteDeleted", "ModelDeleted", "AssetDeleted")


def _since_created(conn: Connection, subject: str) -> list[Event]:
    """The events about ``subject`` after its last creation (all of them if none)."""
    found = history_of(conn=conn, subject=subject)
    starts = [i for i, e in enumerate(found) if e.kind in CREATION_EVENTS]
    return found[starts[-1] + 1:] if starts else found


def _history_use(conn: Connection, subject: str) -> list[str]:
    later = _since_created(conn, subject)
    if not later:
        return []
    kinds = ", ".join(dict.fromkeys(e.kind for e in later))
    return [f"{len(later)} event(s) in its history since it was created ({kinds})"]


def _count(conn: Connection, table: Any, *where: Any) -> int:
    return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def _uses(conn: Connection, checks: Sequence[tuple[str, Any, Any]]) -> list[str]:
    """``N what`` for each (what, table, condition) that matches rows."""
    out = []
    for what, table, condition in checks:
        n = _count(conn, table, condition)
        if n:
            out.append(f"{n} {what}")
    return out


def site_uses(conn: Connection, code: str) -> list[str]:
    """What uses the site ``code``, in words; empty if it was never used."""
    deleted = select(events.c.subject).where(events.c.kind.in_(DELETED_EVENTS))
    return _history_use(conn, code) + _uses(conn, [
        ("site(s) under it", sites, sites.c.parent_code == code),
        ("asset(s) there", assets, assets.c.site_code == code),
        ("location(s)", locations, locations.c.site_code == code),
        ("stock line(s)", stock, stock.c.site_code == code),
        ("loan(s)", loans, loans.c.site_code == code),
        ("transfer(s)", transfers,
         or_(transfers.c.from_site_code == code, transfers.c.to_site_code == code)),
        ("manifest item(s)", manifest_items, manifest_items.c.mobile_lab_code == code),
        ("rotation(s)", rotations, rotations.c.mobile_lab_code == code),
        ("rotation stop(s)", rotation_stops, rotation_stops.c.site_code == code),
        ("audit(s)", audits, audits.c.site_code == code),
        # Sightings and other records' events there, except of records deleted since.
        ("event(s) of other records there", events,
         (events.c.site_code == code) & (events.c.subject != code)
         & events.c.subject.not_in(deleted)),
    ])


def model_uses(conn: Connection, code: str) -> list[str]:
    """What uses the catalog model ``code``, in words; empty if it was never used."""
    return _history_use(conn, code) + _uses(conn, [
        ("asset(s) of it", assets, assets.c.model_code == code),
        ("stock line(s)", stock, stock.c.model_code == code),
        ("kit content line(s)", kit_contents, kit_contents.c.part == code),
        ("kit loss(es)", kit_losses, kit_losses.c.part == code),
        ("audit count(s)", audit_counts, audit_counts.c.model_code == code),
    ])


def asset_uses(conn: Connection, tag: str) -> list[str]:
    """What uses the asset ``tag`` (or kit), in words; empty if it was never used."""
    as_tag: list[tuple[str, Any, Any]] = [
        ("loan item(s)", loan_items, loan_items.c.asset_tag == tag),
        ("repair(s)", repairs, repairs.c.asset_tag == tag),
        ("kit content line(s)",
         kit_contents, or_(kit_contents.c.kit_tag == tag, kit_contents.c.part == tag)),
        ("kit loss(es)", kit_losses, or_(kit_losses.c.kit_tag == tag, kit_losses.c.part == tag)),
        ("transfer item(s)", transfer_items, transfer_items.c.asset_tag == tag),
        ("transfer scan(s)", transfer_scans, transfer_scans.c.tag == tag),
        ("manifest item(s)", manifest_items, manifest_items.c.asset_tag == tag),
        ("audit scan(s)", audit_scans, audit_scans.c.tag == tag),
        ("audit finding(s)", audit_findings, audit_findings.c.tag == tag),
    ]
    return _history_use(conn, tag) + _uses(conn, as_tag)


def _state(record: Site | Model | asset_records.Asset) -> dict[str, Any]:
    return {k: v for k, v in asdict(record).items() if v is not None}


def _refuse(what: str, key: str, uses: list[str], retire: str) -> None:
    if uses:
        raise InUseError(what=what, key=key, uses=uses, retire=retire)


def _gone(rowcount: int, *, what: str, key: str, expected: int) -> None:
    """ConflictError unless the guarded delete removed the row read in this transaction at
    version ``expected`` (another transaction changed or deleted it in between: the
    caller's transaction, tombstone included, rolls back)."""
    if rowcount != 1:
        raise ConflictError(f"{what} {key!r} was changed or deleted by someone else since "
                            f"version {expected} was read; read it again")


def delete_site(
    *, conn: Connection, code: str, by: str, note: str | None = None,
    expected_version: int | None = None, other_uses: Sequence[str] = (),
) -> Event:
    """Delete a site made in error and never used; returns the ``SiteDeleted`` tombstone.
    InUseError (409) if it was used: retire it (:func:`retire_site`)."""
    site = get_site(conn=conn, code=code)
    check_site_version(site, expected_version)
    _refuse("site", code, site_uses(conn, code) + list(other_uses),
            f"POST /api/v1/sites/{code}/retire (labhub inventory sites retire {code})")
    event = record_event(conn=conn, kind="SiteDeleted", subject=code, by=by, site_code=code,
                         from_state=_state(site), note=check_note(note))
    _gone(conn.execute(delete(sites).where(sites.c.code == code,
                                           sites.c.version == site.version)).rowcount,
          what="site", key=code, expected=site.version)
    return event


def delete_model(
    *, conn: Connection, code: str, by: str, note: str | None = None,
    expected_version: int | None = None,
) -> Event:
    """Delete a catalog model made in error and never used; returns the ``ModelDeleted``
    tombstone. InUseError (409) if it was used: retire it (:func:`retire_model`)."""
    model = get_model(conn=conn, code=code)
    check_model_version(model, expected_version)
    _refuse("model", code, model_uses(conn, code),
            f"POST /api/v1/models/{code}/retire (labhub inventory models retire {code})")
    event = record_event(conn=conn, kind="ModelDeleted", subject=code, by=by,
                         from_state=_state(model), note=check_note(note))
    _gone(conn.execute(delete(models).where(models.c.code == code,
                                            models.c.version == model.version)).rowcount,
          what="model", key=code, expected=model.version)
    return event


def delete_asset(
    *, conn: Connection, tag: str, by: str, note: str | None = None,
    expected_version: int | None = None,
) -> Event:
    """Delete an asset (or kit) registered in error and never used; returns the
    ``AssetDeleted`` tombstone. InUseError (409) if it was used: retire it (its status
    ``retired``, :func:`retire_asset`)."""
    asset = asset_records.get_asset(conn=conn, tag=tag)
    asset_records.check_version(asset, expected_version)
    _refuse("asset", tag, asset_uses(conn, tag),
            f"POST /api/v1/assets/by-tag/{tag}/retire (labhub inventory assets retire {tag})")
    event = record_event(conn=conn, kind="AssetDeleted", subject=tag, by=by,
                         site_code=asset.site_code, from_state=_state(asset),
                         note=check_note(note))
    _gone(conn.execute(delete(assets).where(assets.c.tag == tag,
                                            assets.c.version == asset.version)).rowcount,
          what="asset", key=tag, expected=asset.version)
    return event


def retire_site(
    *, conn: Connection, code: str, by: str, note: str | None = None,
    expected_version: int | None = None,
) -> Site:
    """Retire a site that was used: it stays, with its history, but takes nothing new.
    The sites under it must be retired and its assets moved away or retired first, and no
    transfer to or from it nor audit of it may be open. A lab site's rollout becomes
    ``closed``. Writes SiteRetired."""
    site = get_site(conn=conn, code=code)
    check_site_version(site, expected_version)
    if site.retired_at is not None:
        raise InvalidTransitionError(f"{site.kind} {code!r} is already retired")
    blocking = _uses(conn, [
        ("site(s) under it that are not retired", sites,
         (sites.c.parent_code == code) & sites.c.retired_at.is_(None)),
        ("asset(s) there that are not retired (move or retire them first)", assets,
         (assets.c.site_code == code) & (assets.c.status != "retired")),
        ("transfer(s) to or from it not yet received", transfers,
         or_(transfers.c.from_site_code == code, transfers.c.to_site_code == code)
         & (transfers.c.status != "received")),
        ("open audit(s)", audits, (audits.c.site_code == code) & (audits.c.status == "open")),
    ])
    if blocking:
        raise InvalidTransitionError(f"{site.kind} {code!r} cannot be retired yet: "
                                     + "; ".join(blocking))
    before: dict[str, Any] = {"retired": False}
    after: dict[str, Any] = {"retired": True}
    if site.kind == "site" and site.rollout_status != "closed":
        before["rollout_status"], after["rollout_status"] = site.rollout_status, "closed"
    event = record_event(conn=conn, kind="SiteRetired", subject=code, by=by, site_code=code,
                         from_state=before, to_state=after, note=check_note(note))
    values: dict[str, Any] = {"retired_at": event.at}
    if "rollout_status" in after:
        values.update(rollout_status="closed", rollout_changed_at=event.at)
    write_site(conn=conn, site=site, **values)
    return get_site(conn=conn, code=code)


def retire_model(
    *, conn: Connection, code: str, by: str, note: str | None = None,
    expected_version: int | None = None,
) -> Model:
    """Retire a catalog model that was used: its assets and stock stay as they are, and
    no new assets of it are registered. Writes ModelRetired."""
    model = get_model(conn=conn, code=code)
    check_model_version(model, expected_version)
    if model.retired_at is not None:
        raise InvalidTransitionError(f"model {code!r} is already retired")
    event = record_event(conn=conn, kind="ModelRetired", subject=code, by=by,
                         from_state={"retired": False}, to_state={"retired": True},
                         note=check_note(note))
    write_model(conn=conn, model=model, retired_at=event.at)
    return get_model(conn=conn, code=code)


def retire_asset(
    *, conn: Connection, tag: str, by: str, note: str | None = None,
    expected_version: int | None = None,
) -> asset_records.Asset:
    """Retire an asset or kit: its status becomes ``retired`` (final), along the allowed
    transitions (not while on loan or in transit). Writes AssetStatusChanged."""
    return asset_records.set_status(conn=conn, tag=tag, status="retired", by=by, note=note,
                                    expected_version=expected_version)
