"""The broker's accounts: Mosquitto's password file and ACL file, written by LabHub.

``labhub mqtt users ...`` (``labhub/cli_mqtt.py``) keeps the accounts of the hub, the
nodes and the command senders of a lab's broker in a small list of its own, ``<acl
file>.json`` (:func:`list_path`), and from it rewrites the whole ACL file on every change,
so adding or removing an account twice is the same as once. The password file keeps the
hashes: LabHub replaces or removes the line of the account it changes and leaves every
other line as it was (an account added by hand with ``mosquitto_passwd`` stays, but gets
no ACL entries: with an ``acl_file`` Mosquitto then lets it do nothing).

The hashes are the ones ``mosquitto_passwd`` writes for Mosquitto 2.0: ``$7$``, PBKDF2 with
HMAC-SHA512, 101 iterations, a 12-byte salt, a 64-byte key, both in standard base64
(``name:$7$101$<salt>$<key>``). Generated passwords are 144 random bits, so the low
iteration count (Mosquitto's default, paid by the broker at every connection) costs
nothing in strength.

What each kind of account may do (``P`` the topic prefix, ``labhub`` by default):

- a node (``--site S``, device ``D``, its own name unless ``--device``): write
  ``P/S/D/#`` (its readings, its status, its last will) except ``P/S/D/cmd``,
  ``P/S/D/rpc/...`` and ``P/S/D/state`` (``deny`` lines, which Mosquitto checks before the
  grants); it reads nothing: nodes take no commands, the hub runs them on its kits;
- a command sender (``--commands S``, a dashboard or a teacher's tool): write
  ``P/S/+/cmd`` and ``P/S/+/rpc/request/+``, read their replies ``P/S/+/cmd/reply`` and
  ``P/S/+/rpc/response/+``;
- the hub (``add-hub``): read and write ``P/#`` and the Home Assistant discovery prefix.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import grp
import hashlib
import json
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

ITERATIONS = 101  # what mosquitto_passwd writes; see the module docstring
SALT_BYTES = 12
KEY_BYTES = 64
PASSWORD_BYTES = 18  # 24 characters of URL-safe base64
LIST_VERSION = 1
BROKER_GROUP = "mosquitto"  # Mosquitto 2 reads its files after dropping to this user
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
NAME_RULE = ("1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit "
             "(it is a topic level and a line of the password file)")

Kind = Literal["node", "hub", "commands"]


class AccountError(ValueError):
    """An account or a file that cannot be written as asked; the message says why."""


@dataclass(frozen=True)
class Account:
    """One broker user and what it may do."""

    name: str
    hub: bool = False
    site: str | None = None
    device: str | None = None  # the node's device id in its topics; its name when None
    commands: tuple[str, ...] = ()  # sites whose kits it may send commands to

    @property
    def kind(self) -> Kind:
        if self.hub:
            return "hub"
        return "node" if self.site is not None else "commands"

    @property
    def topic_device(self) -> str | None:
        return None if self.site is None else (self.device or self.name)

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "hub": self.hub, "site": self.site, "device": self.device,
                "commands": list(self.commands)}

    @classmethod
    def from_json(cls, item: dict[str, object]) -> Account:
        commands = item.get("commands") or []
        assert isinstance(commands, list)
        return cls(name=str(item["name"]), hub=bool(item.get("hub")),
                   site=_opt(item.get("site")), device=_opt(item.get("device")),
                   commands=tuple(str(c) for c in commands))


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


def check_name(value: str, what: str) -> str:
    if not NAME.fullmatch(value):
        raise AccountError(f"{what} {value!r} is not allowed: use {NAME_RULE}")
    return value


# -- the rules ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Topics:
    """The prefixes the ACL is written for (the hub's ``[mqtt]`` settings)."""

    prefix: str = "labhub"
    ha_discovery_prefix: str = "homeassistant"


def acl_lines(account: Account, topics: Topics) -> list[str]:
    """The ``topic`` lines of one account (without its ``user`` line)."""
    p = topics.prefix
    if account.hub:
        return [f"topic readwrite {p}/#", f"topic readwrite {topics.ha_discovery_prefix}/#"]
    lines: list[str] = []
    if account.site is not None:
        own = f"{p}/{account.site}/{account.topic_device}"
        lines += [f"topic deny {own}/cmd/#", f"topic deny {own}/rpc/#",
                  f"topic deny {own}/state/#", f"topic write {own}/#"]
    for site in account.commands:
        lines += [f"topic write {p}/{site}/+/cmd", f"topic write {p}/{site}/+/rpc/request/+",
                  f"topic read {p}/{site}/+/cmd/reply",
                  f"topic read {p}/{site}/+/rpc/response/+"]
    return lines


def acl_text(accounts: list[Account], topics: Topics) -> str:
    """The whole ACL file for these accounts."""
    out = ["# Written by `labhub mqtt users` from the list in the .json file beside it;",
           "# edits here are overwritten. See docs/mqtt.md and docs/security.md.",
           "# Accounts not listed here (anonymous ones too) may neither publish nor subscribe.",
           ""]
    for account in sorted(accounts, key=lambda a: a.name):
        out.append(f"# {account.kind}" + (f" {account.site}/{account.topic_device}"
                                          if account.site else ""))
        out.append(f"user {account.name}")
        out.extend(acl_lines(account, topics))
        out.append("")
    return "\n".join(out)


# -- passwords ----------------------------------------------------------------------------


def new_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


def hash_password(password: str, *, salt: bytes | None = None,
                  iterations: int = ITERATIONS) -> str:
    """The ``$7$`` hash ``mosquitto_passwd`` writes for ``password``."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    key = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, KEY_BYTES)
    return (f"$7${iterations}${base64.b64encode(salt).decode('ascii')}"
            f"${base64.b64encode(key).decode('ascii')}")


def verify_password(password: str, hashed: str) -> bool:
    """Whether ``password`` matches a ``$7$`` line's hash (what the broker checks)."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[1] != "7":
        return False
    salt = base64.b64decode(parts[3])
    return secrets.compare_digest(hash_password(password, salt=salt,
                                                iterations=int(parts[2])), hashed)


# -- the files ----------------------------------------------------------------------------


def list_path(acl_file: Path) -> Path:
    """The list LabHub keeps of its accounts, beside the ACL file."""
    return acl_file.with_name(acl_file.name + ".json")


@dataclass
class Files:
    """The password file, the ACL file and the list, read together under one lock."""

    passwd_file: Path
    acl_file: Path
    accounts: dict[str, Account] = field(default_factory=dict)
    passwd_lines: list[str] = field(default_factory=list)  # as read, hashes included

    def hashes(self) -> dict[str, str]:
        found = {}
        for line in self.passwd_lines:
            name, sep, hashed = line.partition(":")
            if sep and not line.lstrip().startswith("#"):
                found[name] = hashed
        return found

    def set_password(self, name: str, password: str) -> None:
        entry = f"{name}:{hash_password(password)}"
        for number, line in enumerate(self.passwd_lines):
            if line.partition(":")[0] == name:
                self.passwd_lines[number] = entry
                return
        self.passwd_lines.append(entry)

    def drop_password(self, name: str) -> None:
        self.passwd_lines = [ln for ln in self.passwd_lines if ln.partition(":")[0] != name]

    def save(self, topics: Topics) -> None:
        """Write all three, each whole and in one rename: the list, the ACL, the passwords."""
        listing = {"version": LIST_VERSION,
                   "accounts": [a.to_json() for a in sorted(self.accounts.values(),
                                                            key=lambda a: a.name)]}
        _replace(list_path(self.acl_file), json.dumps(listing, indent=2) + "\n")
        _replace(self.acl_file, acl_text(list(self.accounts.values()), topics))
        _replace(self.passwd_file, "".join(f"{ln}\n" for ln in self.passwd_lines))


@contextlib.contextmanager
def opened(passwd_file: Path, acl_file: Path) -> Iterator[Files]:
    """The files, locked against a second ``labhub mqtt users`` changing them meanwhile."""
    try:
        acl_file.parent.mkdir(parents=True, exist_ok=True)
        passwd_file.parent.mkdir(parents=True, exist_ok=True)
        lock = acl_file.with_name(acl_file.name + ".lock").open("a")
    except OSError as exc:
        raise AccountError(f"cannot write beside {acl_file}: {exc.strerror}") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        files = Files(passwd_file, acl_file)
        try:
            listed = list_path(acl_file)
            if listed.exists():
                document = json.loads(listed.read_text("utf-8"))
                for item in document.get("accounts", []):
                    account = Account.from_json(item)
                    files.accounts[account.name] = account
            elif acl_file.exists() and acl_file.stat().st_size:
                raise AccountError(
                    f"{acl_file} exists but {listed} does not: it was not written by "
                    "labhub; move it away (or choose another --acl-file) first")
            if passwd_file.exists():
                files.passwd_lines = passwd_file.read_text("utf-8").splitlines()
        except OSError as exc:
            raise AccountError(f"cannot read {exc.filename}: {exc.strerror}") from None
        except (ValueError, KeyError, AssertionError) as exc:
            if isinstance(exc, AccountError):
                raise
            raise AccountError(f"{list_path(acl_file)} is not a list labhub wrote: {exc}"
                               ) from None
        yield files


def _replace(path: Path, text: str) -> None:
    """Write ``path`` whole through a temporary file and a rename, keeping an existing
    file's mode and group; a new file is 0640, group ``mosquitto`` when there is one."""
    try:
        before = path.stat()
    except FileNotFoundError:
        before = None
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o640 if before is None else before.st_mode & 0o7777)
        group = before.st_gid if before is not None else _broker_group()
        if group is not None:
            with contextlib.suppress(OSError):  # not ours to change: keep the default
                os.chown(temporary, -1, group)
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise AccountError(f"cannot write {path}: {exc.strerror}") from None


def _broker_group() -> int | None:
    try:
        return grp.getgrnam(BROKER_GROUP).gr_gid
    except KeyError:
        return None


__all__ = ["Account", "AccountError", "Files", "Topics", "acl_lines", "acl_text",
           "hash_password", "list_path", "new_password", "opened", "verify_password"]
