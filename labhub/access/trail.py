"""What the routes write to the audit log about a request: who (the signed-in caller),
from which address, what, and how it ended; and the refusals (401, 403), bounded.

A refused request writes at most one entry a minute for the same address, path and
status (:data:`REFUSALS_EVERY_S`): the entry that is written says how many were held back
since the previous one, so a flood of refusals costs one row a minute per address and
path, not one per request. The hub remembers at most :data:`REFUSAL_KEYS_MAX` such keys
(the oldest go first), so the memory it takes is bounded too. A refused request's body is
never read: its declared length is only added to ``unauthenticated_bytes`` (see
:func:`refusal_counters`), so requests that are not signed in never fill the disk.

Sign-in failures are written by the sign-in route (``sign_in_failed``); those refused by
the rate limit go through the same bound (:func:`admit`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import BackgroundTasks, Request
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from labhub.access import audit
from labhub.access.who import address_of

log = logging.getLogger(__name__)

REFUSALS_EVERY_S = 60.0  # one entry a minute per (address, path, status)
REFUSAL_KEYS_MAX = 10_000  # keys remembered; past that the oldest are forgotten
ERROR_MAX = 300  # characters of an error kept in an entry's detail


class Throttle:
    """Admits a key at most once per :data:`REFUSALS_EVERY_S`, counting the others."""

    def __init__(self, *, every_s: float = REFUSALS_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._every_s = every_s
        self._clock = clock
        self._seen: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.refused = 0  # requests refused (401, 403), written or held back
        self.unauthenticated_bytes = 0  # bytes the refused requests said they carried

    def admit(self, key: str) -> int | None:
        """None when ``key`` was admitted less than a minute ago (this one is held back);
        else how many were held back since it was last admitted."""
        now = self._clock()
        with self._lock:
            last = self._seen.get(key)
            if last is not None and now - last[0] < self._every_s:
                self._seen[key] = (last[0], last[1] + 1)
                return None
            self._seen.pop(key, None)
            self._seen[key] = (now, 0)
            while len(self._seen) > REFUSAL_KEYS_MAX:
                self._seen.popitem(last=False)
            return 0 if last is None else last[1]

    def count(self, declared_bytes: int) -> None:
        with self._lock:
            self.refused += 1
            self.unauthenticated_bytes += declared_bytes

    def __len__(self) -> int:
        return len(self._seen)


_throttle_lock = threading.Lock()


def throttle_of(request: Request) -> Throttle:
    """The app's throttle of refusals (made on first use)."""
    state = request.app.state
    with _throttle_lock:
        found: Throttle | None = getattr(state, "refusals", None)
        if found is None:
            found = state.refusals = Throttle()
    return found


def refusal_counters(request: Request) -> dict[str, int]:
    """``refused_requests`` and ``unauthenticated_bytes`` since the hub started."""
    t = throttle_of(request)
    return {"refused_requests": t.refused, "unauthenticated_bytes": t.unauthenticated_bytes}


def _declared_bytes(request: Request) -> int:
    try:
        return max(0, int(request.headers.get("content-length", "0")))
    except ValueError:
        return 0


def _keep_days(request: Request) -> int | None:
    days: int | None = getattr(request.app.state.settings, "audit_log_days", None)
    return days


def _credential(request: Request) -> str:
    """What the request showed to prove who it is, never the secret itself."""
    header = request.headers.get("authorization")
    if header is not None:
        token = header.strip().partition(" ")[2].strip()
        return {"lhp_": "person token", "lhd_": "device token"}.get(token[:4], "other")
    return "session cookie" if request.cookies.get("labhub_session") else "none"


def record_refusal(request: Request, *, status: int, permission: str | None,
                   site: str | None = None, actor: str | None = None,
                   why: str | None = None) -> bool:
    """Count a refused request and write its entry unless the same address, path and
    status wrote one less than a minute ago; whether an entry was written. ``why`` says
    what was wrong where no permission was missing (a CSRF header, a foreign Host)."""
    throttle = throttle_of(request)
    throttle.count(_declared_bytes(request))
    address = address_of(request)
    path = request.url.path
    held_back = throttle.admit(f"{address}|{status}|{path}")
    if held_back is None:
        return False
    detail: dict[str, Any] = {"status": status, "method": request.method, "path": path,
                              "permission": permission, "credential": _credential(request)}
    if why is not None:
        detail["why"] = why
    if held_back:
        detail["held_back"] = held_back
    engine: Engine = request.app.state.hub.engine
    with engine.begin() as conn:
        audit.record(conn, actor=actor or "anonymous", action="refused", outcome=str(status),
                     target=path, site=site, address=address, detail=detail,
                     keep_days=_keep_days(request))
    return True


def record(request: Request, *, action: str, outcome: str = "ok", target: str | None = None,
           site: str | None = None, detail: Any = None, actor: str | None = None) -> None:
    """One entry about ``request`` in a transaction of its own, by the caller its gate let
    through (``actor`` when given)."""
    if actor is None:
        caller = getattr(request.state, "caller", None)
        actor = caller.name if caller is not None else "anonymous"
    engine: Engine = request.app.state.hub.engine
    with engine.begin() as conn:
        audit.record(conn, actor=actor, action=action, outcome=outcome, target=target,
                     site=site, address=address_of(request), detail=detail,
                     keep_days=_keep_days(request))


def _record_quietly(request: Request, **entry: Any) -> None:
    """:func:`record` after the answer was sent: a database that cannot take it (busy past
    its timeout) is logged, since nobody is left to tell."""
    try:
        record(request, **entry)
    except SQLAlchemyError as exc:
        log.warning("%s on %s could not be written to the audit log: %s",
                    entry.get("action"), entry.get("target"), exc)


@contextmanager
def audited(request: Request, action: str, *, target: str, site: str | None = None,
            detail: dict[str, Any] | None = None,
            later: BackgroundTasks | None = None) -> Iterator[dict[str, Any]]:
    """Write an entry for what the block does: ``ok`` with ``detail`` and what the block
    adds to the dict it gets, or ``failed`` with the error (which goes on up; an entry the
    database cannot take then is logged, never put in the error's place). With ``later``,
    an ``ok`` entry is written after the answer is sent (a stop_all must not wait for a
    busy database); a failure's entry is written at once, since an error's answer runs no
    background task."""
    more: dict[str, Any] = {}
    actor = getattr(getattr(request.state, "caller", None), "name", None)

    def write(**entry: Any) -> None:
        if later is None:
            record(request, actor=actor, **entry)
        else:
            later.add_task(_record_quietly, request, actor=actor, **entry)

    try:
        yield more
    except Exception as exc:
        error = (str(exc) or type(exc).__name__)[:ERROR_MAX]
        _record_quietly(request, actor=actor, action=action, outcome="failed", target=target,
                        site=site, detail={**(detail or {}), **more, "error": error})
        raise
    write(action=action, target=target, site=site, detail={**(detail or {}), **more})


def record_mqtt_command(engine: Engine, *, device_id: str, site: str, command: str,
                        pin: int | None, value: float | None, outcome: str,
                        error: str | None = None, keep_days: int | None = None) -> None:
    """A command that came over MQTT: the hub does not know which MQTT client sent it
    (the broker does), so the actor is ``mqtt``."""
    detail: dict[str, Any] = {"command": command, "pin": pin, "value": value, "via": "mqtt"}
    if error is not None:
        detail["error"] = error[:ERROR_MAX]
    with engine.begin() as conn:
        audit.record(conn, actor="mqtt", action="device_command", outcome=outcome,
                     target=device_id, site=site, detail=detail, keep_days=keep_days)
