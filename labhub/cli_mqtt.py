"""``labhub mqtt users``: the broker's accounts for the hub, the nodes and command senders.

The files and the rules are ``labhub/mqtt_accounts.py``; this module reads the options,
prints the generated password once, and asks Mosquitto to reload (SIGHUP) only when told
which process it is (``--reload-pid``). It needs no ``mosquitto_passwd``.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from labhub.cli_common import echo, secho, settings_or_exit
from labhub.mqtt_accounts import (
    Account,
    AccountError,
    Files,
    Topics,
    check_name,
    list_path,
    new_password,
    opened,
)

mqtt_app = typer.Typer(help="The MQTT broker's accounts (Mosquitto password and ACL files).",
                       no_args_is_help=True)
users_app = typer.Typer(help="Add, list and remove the broker's users.", no_args_is_help=True)
mqtt_app.add_typer(users_app, name="users")

PasswdFile = Annotated[Path | None, typer.Option(
    "--passwd-file", help="Mosquitto's password file [default: the mqtt_passwd_file setting]")]
AclFile = Annotated[Path | None, typer.Option(
    "--acl-file", help="Mosquitto's ACL file [default: the mqtt_acl_file setting]")]
ReloadPid = Annotated[int | None, typer.Option(
    "--reload-pid", help="send SIGHUP to this Mosquitto process after writing, so it "
                         "reads the files again (e.g. $(cat /run/mosquitto/mosquitto.pid))")]
PasswordStdin = Annotated[bool, typer.Option(
    "--password-stdin", help="read the password from the first line of stdin instead of "
                             "generating one")]
NewPassword = Annotated[bool, typer.Option(
    "--new-password", help="for an account that exists: generate a new password (else "
                           "its password is kept)")]


def _paths(passwd_file: Path | None, acl_file: Path | None) -> tuple[Path, Path, Topics]:
    settings = settings_or_exit()
    topics = Topics()
    if settings.mqtt is not None:
        topics = Topics(settings.mqtt.topic_prefix, settings.mqtt.ha_discovery_prefix)
    return (passwd_file or settings.mqtt_passwd_file, acl_file or settings.mqtt_acl_file,
            topics)


def _fail(message: str) -> typer.Exit:
    secho(f"labhub mqtt users: {message}", fg="red", err=True)
    return typer.Exit(1)


def _read_password() -> str:
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise _fail("--password-stdin: the first line of stdin is empty")
    if len(line) > 1024:
        raise _fail("--password-stdin: a password longer than 1024 characters")
    return line


def _reload(pid: int | None) -> None:
    if pid is None:
        echo("Mosquitto reads the files when it starts, or on SIGHUP (--reload-pid, "
             "or systemctl reload mosquitto).")
        return
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        raise _fail(f"the files are written, but SIGHUP to process {pid} failed: "
                    f"{exc.strerror}; reload Mosquitto yourself") from None
    echo(f"sent SIGHUP to process {pid}: Mosquitto reads the files again")


def _store(account: Account, *, passwd_file: Path | None, acl_file: Path | None,
           password_stdin: bool, new: bool, reload_pid: int | None) -> None:
    passwd, acl, topics = _paths(passwd_file, acl_file)
    given = _read_password() if password_stdin else None
    try:
        with opened(passwd, acl) as files:
            existed = account.name in files.hashes()
            password = given or (new_password() if new or not existed else None)
            files.accounts[account.name] = account
            if password is not None:
                files.set_password(account.name, password)
            files.save(topics)
    except AccountError as exc:
        raise _fail(str(exc)) from None
    verb = "updated" if existed else "added"
    echo(f"{verb} {account.kind} account {account.name!r} in {passwd} and {acl}")
    if password is not None and given is None:
        echo(f"password: {password}")
        echo("(shown once: put it in the node's sketch, or the hub's [mqtt] password)")
    elif password is None:
        echo("password unchanged (--new-password makes a new one)")
    _reload(reload_pid)


@users_app.command("add")
def add_command(
    name: Annotated[str, typer.Argument(help="the user name (a node: its device id)")],
    site: Annotated[str | None, typer.Option(
        "--site", help="the site code the node publishes under")] = None,
    device: Annotated[str | None, typer.Option(
        "--device", help="the node's device id in its topics, when not its user name")] = None,
    commands: Annotated[list[str] | None, typer.Option(
        "--commands", help="a site whose kits this user may send commands to "
                           "(.../cmd, .../rpc/request) and read the replies of; repeat "
                           "for several")] = None,
    passwd_file: PasswdFile = None,
    acl_file: AclFile = None,
    password_stdin: PasswordStdin = False,
    new_password: NewPassword = False,
    reload_pid: ReloadPid = None,
) -> None:
    """Add a node (--site) or a command sender (--commands), or change one's rights.

    A node may publish only under <prefix>/<site>/<device>/ and not to its cmd, rpc or
    state topics; it reads nothing. Running it again for the same name replaces the
    account's rights and keeps its password.
    """
    try:
        check_name(name, "user name")
        if site is not None:
            check_name(site, "site code")
        if device is not None:
            check_name(device, "device id")
        sites = tuple(dict.fromkeys(check_name(c, "site code") for c in commands or []))
    except AccountError as exc:
        raise _fail(str(exc)) from None
    if site is None and not sites:
        raise _fail("say what the user may do: --site CODE for a node, --commands CODE for "
                    "a command sender (or add-hub for the hub)")
    if device is not None and site is None:
        raise _fail("--device needs --site")
    account = Account(name=name, site=site, device=device, commands=sites)
    _store(account, passwd_file=passwd_file, acl_file=acl_file,
           password_stdin=password_stdin, new=new_password, reload_pid=reload_pid)


@users_app.command("add-hub")
def add_hub_command(
    name: Annotated[str | None, typer.Argument(
        help="the hub's user name [default: the [mqtt] username setting, else 'labhub-hub']"
    )] = None,
    passwd_file: PasswdFile = None,
    acl_file: AclFile = None,
    password_stdin: PasswordStdin = False,
    new_password: NewPassword = False,
    reload_pid: ReloadPid = None,
) -> None:
    """Add the hub's own account: it reads and writes every LabHub topic (and Home
    Assistant's discovery topics). Put the name and password in the hub's [mqtt] table."""
    settings = settings_or_exit()
    chosen = name or (settings.mqtt.username if settings.mqtt is not None else None)
    chosen = chosen or "labhub-hub"
    try:
        check_name(chosen, "user name")
    except AccountError as exc:
        raise _fail(str(exc)) from None
    _store(Account(name=chosen, hub=True), passwd_file=passwd_file, acl_file=acl_file,
           password_stdin=password_stdin, new=new_password, reload_pid=reload_pid)


@users_app.command("list")
def list_command(passwd_file: PasswdFile = None, acl_file: AclFile = None) -> None:
    """List the broker's accounts and what each may do."""
    passwd, acl, topics = _paths(passwd_file, acl_file)
    if not list_path(acl).exists() and not passwd.exists():
        echo(f"no accounts yet ({list_path(acl)} and {passwd} do not exist)")
        return
    try:
        with opened(passwd, acl) as files:
            _show(files, topics)
    except AccountError as exc:
        raise _fail(str(exc)) from None


def _show(files: Files, topics: Topics) -> None:
    hashes = files.hashes()
    for account in sorted(files.accounts.values(), key=lambda a: a.name):
        rights = []
        if account.hub:
            rights.append(f"everything under {topics.prefix}/ and "
                          f"{topics.ha_discovery_prefix}/")
        if account.site is not None:
            rights.append(f"publishes {topics.prefix}/{account.site}/"
                          f"{account.topic_device}/...")
        if account.commands:
            rights.append("commands to " + ", ".join(account.commands))
        missing = "" if account.name in hashes else "  (no password: cannot log in)"
        echo(f"{account.name:<24} {account.kind:<9} {'; '.join(rights)}{missing}")
    others = sorted(set(hashes) - set(files.accounts))
    for name in others:
        echo(f"{name:<24} {'-':<9} in the password file only: no ACL entries, may do nothing")
    echo(f"{len(files.accounts) + len(others)} accounts")


@users_app.command("remove")
def remove_command(
    name: Annotated[str, typer.Argument(help="the user name")],
    passwd_file: PasswdFile = None,
    acl_file: AclFile = None,
    reload_pid: ReloadPid = None,
) -> None:
    """Remove an account from both files (nothing to do if it is not there)."""
    passwd, acl, topics = _paths(passwd_file, acl_file)
    try:
        with opened(passwd, acl) as files:
            known = name in files.accounts or name in files.hashes()
            files.accounts.pop(name, None)
            files.drop_password(name)
            if known:
                files.save(topics)
    except AccountError as exc:
        raise _fail(str(exc)) from None
    echo(f"removed {name!r}" if known else f"no account {name!r}: nothing to remove")
    if known:
        _reload(reload_pid)


def register(app: typer.Typer) -> None:
    """Add ``labhub mqtt ...`` to the ``labhub`` command."""
    app.add_typer(mqtt_app, name="mqtt")
