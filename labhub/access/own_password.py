"""A person changes their own password: ``POST /api/v1/auth/password`` and the account
page's form both come here.

The current password is asked for again (a session left open on a lab PC must not be
enough to take the account), and a wrong one counts as a failed sign-in for the name in
the app's :class:`~labhub.access.limits.SignInLimiter`, so guessing through this form is
held back as on the sign-in page. The new password follows the same rules as every new
password (:func:`labhub.access.passwords.check_rules`). Once changed, every other session
of the person ends (the one that made the change stays signed in); API tokens stay, as
with "sign out everywhere". A student who signs in with a class PIN or a card has no
password to change: their teacher resets the PIN. On a hub in a network, a person the
central sends down (``network_down_people``) is the central's: a password changed on the
hub would be replaced by the central's at a later sync, so it is changed on the central.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Connection, Engine, select

from labhub.access import accounts, audit, passwords
from labhub.access.limits import SignInLimiter
from labhub.network.inventory_tables import network_down_people

Reason = Literal["wrong", "rules", "none", "central", "wait", "busy"]


class OwnPasswordError(Exception):
    """Why the password was not changed: ``wrong`` (not the current password), ``rules``
    (the new one breaks them), ``none`` (the account has no password), ``central`` (the
    network's central keeps it), ``wait`` (too many failures: ``wait_s``), ``busy`` (every
    password check slot taken: ``wait_s``)."""

    def __init__(self, reason: Reason, message: str, wait_s: float = 0.0) -> None:
        super().__init__(message)
        self.reason: Reason = reason
        self.wait_s = wait_s


@dataclass(frozen=True, slots=True)
class Changed:
    sessions_ended: int  # the person's other sessions, now ended


def kept_by_central(conn: Connection, name: str) -> bool:
    """Whether the network's central sends this person down to this hub (and so keeps
    their password)."""
    return conn.execute(select(network_down_people.c.name_key).where(
        network_down_people.c.name_key == accounts.name_key(name))).first() is not None


def change_own_password(engine: Engine, limiter: SignInLimiter, *, user_id: int,
                        current: str, new: str, keep_session: str | None,
                        address: str | None, keep_days: int | None = None) -> Changed:
    """Check ``current``, then set ``new`` and end every session of the person except
    ``keep_session``; OwnPasswordError when it cannot (nothing is changed then)."""
    with engine.connect() as conn:
        user = accounts.get_user_by_id(conn, user_id=user_id)
        found = accounts.password_hash_of(conn, name=user.name)
        from_central = kept_by_central(conn, user.name)
    stored = None if found is None else found[1]
    if stored is None:
        raise OwnPasswordError("none", "this account has no password: it signs in with a "
                               "class PIN or a card, which a teacher resets")
    if from_central:
        raise OwnPasswordError("central", "this account comes from the network's central: "
                               "change the password there (a change on this hub would be "
                               "replaced at the next sync)")
    keys = [f"name:{accounts.name_key(user.name)}"]
    wait = limiter.wait_s(keys)
    if wait > 0:
        raise OwnPasswordError("wait", "too many wrong passwords for this name: wait and "
                               "try again", wait_s=wait)
    try:
        passwords.check_length(current)
        matches = passwords.verify(stored, current)
    except passwords.PasswordRuleError:
        matches = False
    except passwords.ChecksBusyError as exc:
        raise OwnPasswordError("busy", str(exc), wait_s=exc.retry_after_s) from None
    if not matches:
        limiter.failed(keys)
        with engine.begin() as conn:
            audit.record(conn, actor=user.name, action="password_change_failed",
                         outcome="refused", address=address, keep_days=keep_days)
        raise OwnPasswordError("wrong", "current_password: this is not the account's "
                               "current password")
    try:
        passwords.check_rules(new)
    except passwords.PasswordRuleError as exc:
        raise OwnPasswordError("rules", f"new_password: {exc}") from None
    limiter.succeeded(keys[0])
    hashed = passwords.hash_password(new)
    with engine.begin() as conn:
        accounts.set_password_hash(conn, user_id=user_id, password_hash=hashed)
        ended = accounts.revoke_sessions(conn, user_id=user_id, keep=keep_session)
        audit.record(conn, actor=user.name, action="password_changed", address=address,
                     detail={"sessions_ended": ended}, keep_days=keep_days)
    return Changed(sessions_ended=ended)
