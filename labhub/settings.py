"""The hub's settings: one class, read from ``labhub.toml`` and ``LABHUB_*`` variables.

Precedence, highest first: values passed in code, environment variables, the TOML file,
defaults. The file is ``$LABHUB_CONFIG`` when set, else ``./labhub.toml`` when present, else
``labhub.toml`` in the user's config directory. Every field is documented in
``docs/configuration.md``; a test fails when one is missing there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from platformdirs import user_config_dir, user_data_dir
from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from firmware_bridge.mqtt import MqttSettings

APP_NAME = "labhub"


class ConfigFileMissingError(ValueError):
    """``LABHUB_CONFIG`` names a file that is not there."""


def config_file() -> Path:
    """The TOML file the settings are read from. ``$LABHUB_CONFIG`` must name a file that
    exists (ConfigFileMissingError: a typo there would silently run the hub on its
    defaults; ``/dev/null`` says "no file" on purpose); the other two places need not."""
    named = os.environ.get("LABHUB_CONFIG")
    if named:
        path = Path(named)
        if not path.exists() or path.is_dir():  # /dev/null: no file, on purpose
            raise ConfigFileMissingError(
                f"LABHUB_CONFIG is {named!r}, but there is no such file: fix the path, "
                "or unset LABHUB_CONFIG to use ./labhub.toml or "
                f"{Path(user_config_dir(APP_NAME)) / 'labhub.toml'}")
        return path
    local = Path("labhub.toml")
    if local.is_file():
        return local
    return Path(user_config_dir(APP_NAME)) / "labhub.toml"


class Settings(BaseSettings):
    """Everything a lab coordinator or a ministry's server admin can set."""

    model_config = SettingsConfigDict(
        env_prefix="LABHUB_",
        env_nested_delimiter="__",  # LABHUB_MQTT__HOST sets mqtt.host
        extra="forbid",
        validate_default=True,
    )

    data_dir: Path = Field(
        default_factory=lambda: Path(user_data_dir(APP_NAME)),
        description="Where the hub keeps its database and files.",
    )
    database_url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL of the database. Empty means an embedded SQLite file "
            "`labhub.db` in `data_dir`; a `postgresql+psycopg://` URL selects PostgreSQL."
        ),
    )
    host: str = Field(default="127.0.0.1", description="Address the API listens on.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port the API listens on.")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description=(
            "Names the hub answers to in a request's `Host` (any port); any other is a 400, "
            "so a web page cannot reach the hub through a name of its own (DNS rebinding). "
            "Empty: `localhost`, the computer's name and `name.local`, and `host` when it "
            "is an address of its own; an IP address is always answered."
        ),
    )
    tls_certfile: Path | None = Field(
        default=None,
        description="PEM certificate (chain) to serve HTTPS with; needs `tls_keyfile`.",
    )
    tls_keyfile: Path | None = Field(
        default=None, description="PEM private key of `tls_certfile`.",
    )
    forwarded_allow_ips: list[str] = Field(
        default_factory=list,
        description=(
            "Addresses of reverse proxies whose `X-Forwarded-Proto` and `X-Forwarded-For` "
            "the hub believes (so it knows a request came over HTTPS); none by default."
        ),
    )
    site: str | None = Field(
        default=None, description="Code of the lab site this hub belongs to (e.g. `VC-LP-014`)."
    )
    student_commands: bool = Field(
        default=False,
        description="Whether students may drive the lab's kits (servo, digital and PWM "
                    "outputs); `stop_all` they may always.",
    )
    language: Literal["es", "en", "pt"] = Field(
        default="es", description="Language of labels in exports and pages: es, en or pt."
    )
    timezone: str = Field(
        default="America/Bogota",
        description="IANA time zone used when an export asks for local time.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="How much the hub writes to its log."
    )
    ingest_batch_size: int = Field(
        default=1000, ge=1, le=100_000,
        description="Readings written to the database in one transaction at most.",
    )
    ingest_flush_ms: int = Field(
        default=200, ge=1, le=60_000,
        description="Longest time a reading waits in the queue before it is written.",
    )
    ingest_queue_max: int = Field(
        default=200_000, ge=1000,
        description=(
            "Readings that may wait in the ingest queue; when it is full, producers wait "
            "(back-pressure) instead of readings being dropped."
        ),
    )
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024,
        description=(
            "Largest HTTP upload the API accepts, in bytes: a readings batch, a device's "
            "own data or an inventory CSV import."
        ),
    )
    # The largest legitimate body of any other route is a full loan, kit or transfer
    # (500 tags of 64 characters, about 40 KiB of JSON); 1 MiB leaves room and keeps a
    # flood of them from taking the hub's memory.
    max_json_body_bytes: int = Field(
        default=1024 * 1024, ge=1024,
        description="Largest body of every other API request (JSON writes), in bytes.",
    )
    page_limit_max: int = Field(
        default=1000, ge=10, description="Largest `limit` a list endpoint of the API accepts."
    )
    serial_scan: bool = Field(
        default=True,
        description="Watch USB serial ports for Arduino boards and common clones.",
    )
    serial_ports: list[str] = Field(
        default_factory=list,
        description=(
            "Serial ports to read whether recognised or not: device paths, "
            "`socket://host:port` or `rfc2217://host:port` URLs."
        ),
    )
    firmata_ports: list[str] = Field(
        default_factory=list,
        description="Serial ports with a StandardFirmata board (read and driven with Firmata).",
    )
    serial_protocol: Literal["auto", "lines", "firmata"] = Field(
        default="auto",
        description=(
            "How a board seen for the first time is read: `auto` asks it for Firmata at "
            "each plug-in and reads it as a StandardFirmata board if it answers, else as a "
            "sketch printing lines; `lines` or `firmata` fix it (each device can change it)."
        ),
    )
    serial_baudrate: int = Field(
        default=9600, ge=300, le=2_000_000,
        description="Baud rate for a board seen for the first time (each device can change it).",
    )
    mqtt: MqttSettings | None = Field(
        default=None,
        description=(
            "The MQTT broker to take wireless nodes' readings from (a `[mqtt]` table in "
            "labhub.toml); none: MQTT is off."
        ),
    )
    mqtt_passwd_file: Path = Field(
        default=Path("/etc/mosquitto/labhub/passwd"),
        description=(
            "The broker's password file that `labhub mqtt users` writes (Mosquitto's "
            "`password_file`)."
        ),
    )
    mqtt_acl_file: Path = Field(
        default=Path("/etc/mosquitto/labhub/acl"),
        description=(
            "The broker's ACL file that `labhub mqtt users` writes (Mosquitto's `acl_file`); "
            "its list of accounts is kept beside it, with `.json` added to the name."
        ),
    )
    future_tolerance_s: int = Field(
        default=600, ge=0,
        description=(
            "How far in the future a reading's own timestamp may be before it is refused "
            "(a device clock that is wrong), in seconds."
        ),
    )

    role: Literal["hub", "central"] = Field(
        default="hub",
        description=(
            "`hub`: a lab's LabHub, which may join a network (`labhub network join`). "
            "`central`: the network's central LabHub, which takes every hub's data "
            "(PostgreSQL only; docs/network.md)."
        ),
    )
    network_sync_every_s: int = Field(
        default=60, ge=5, le=86_400,
        description="A hub in a network: seconds between two contacts with the central.",
    )
    network_bandwidth_kbit: int = Field(
        default=0, ge=0,
        description=(
            "A hub in a network: most kilobits per second its uploads may take (0: no "
            "limit). A rural link of 256 kbit/s stays usable in class at 64."
        ),
    )
    network_batch_bytes: int = Field(
        default=256 * 1024, ge=4096, le=16 * 1024 * 1024,
        description="A hub in a network: bytes of one batch sent up, at most (about).",
    )
    network_cut_pause_ms: int = Field(
        default=200, ge=1, le=60_000,
        description=(
            "A hub in a network: milliseconds it waits after a cut upload before asking "
            "the central where to go on; doubled after each cut in a row."
        ),
    )
    network_ca_file: Path | None = Field(
        default=None,
        description=(
            "A hub in a network: a PEM file of the CA (or the certificate) to trust for "
            "the central's HTTPS instead of the system's trust store: for a central with a "
            "certificate of its own."
        ),
    )
    network_clock_tolerance_min: int = Field(
        default=10, ge=1,
        description=(
            "The central: a hub whose clock is off by more than this many minutes has "
            "its readings flagged until a coordinator corrects them."
        ),
    )

    session_hours: int = Field(
        default=12, ge=1, le=24 * 90,
        description="How long a sign-in lasts, in hours, before the person signs in again.",
    )
    audit_log_days: int = Field(
        default=365, ge=1,
        description=(
            "How long entries of the audit log (sign-ins, tokens, roles, refusals) are "
            "kept, in days; older ones are deleted at start and hourly."
        ),
    )

    # -- routine work (docs/operations.md): the scheduler and its jobs -------------------
    jobs_enabled: bool = Field(
        default=True,
        description=(
            "Run the hub's scheduled jobs (rollups, retention, backups, reminders, "
            "scheduled runs, the disk guard). Two processes on one database still run "
            "each job once: they take turns through a lock in the database."
        ),
    )
    job_workers: int = Field(
        default=2, ge=1, le=8,
        description="Threads that run jobs; long jobs work in chunks and never hold up ingest.",
    )
    rollup_every_s: int = Field(
        default=60, ge=5, le=3600,
        description=(
            "How often the hourly and daily rollups take in new and late readings, in seconds."
        ),
    )
    readings_keep_days: int = Field(
        default=0, ge=0,
        description=(
            "Raw readings older than this many days are deleted once they are rolled up "
            "and, on a hub of a network, acknowledged by the central; 0 keeps them all. "
            "Rollups are kept for ever."
        ),
    )
    prune_at: str = Field(
        default="03:30",
        description=(
            "When old raw readings are pruned each day (HH:MM, the lab's time)."
        ),
    )
    backup_dir: Path | None = Field(
        default=None,
        description=(
            "Where the nightly backups go (a folder or a mounted USB stick); empty means "
            "`backups` in `data_dir`."
        ),
    )
    backup_at: str = Field(
        default="02:00", description="When the nightly backup runs (HH:MM, the lab's time)."
    )
    backup_keep_daily: int = Field(
        default=7, ge=1, le=366, description="Daily backups kept."
    )
    backup_keep_weekly: int = Field(
        default=4, ge=0, le=520, description="Weekly backups kept (the newest of each week)."
    )
    disk_min_free_mb: int = Field(
        default=500, ge=0,
        description=(
            "Below this much free space on the data's disk, in MB, the hub warns (health, "
            "web app, log) and stops keeping the bodies of dead letters (it still counts "
            "them)."
        ),
    )
    disk_check_every_s: int = Field(
        default=300, ge=5, le=86400, description="How often the disk guard looks, in seconds."
    )
    reminders_at: str = Field(
        default="07:00",
        description=(
            "When the day's reminders are worked out and the e-mail digest sent (HH:MM, the "
            "lab's time)."
        ),
    )
    audit_every_months: int = Field(
        default=6, ge=0, le=60,
        description="A site's audit is due this many months after its last one; 0: no reminder.",
    )
    device_silent_hours: int = Field(
        default=12, ge=0, le=24 * 30,
        description="A device that sent nothing for this many hours is a reminder; 0: none.",
    )
    smtp_host: str | None = Field(
        default=None, description="The mail server for reminder digests; empty sends no e-mail."
    )
    smtp_port: int = Field(default=587, ge=1, le=65535, description="The mail server's port.")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description=(
            "How the connection to the mail server is protected (`none` only on the lab's own "
            "machine)."
        ),
    )
    smtp_user: str | None = Field(
        default=None,
        description=(
            "The mail server's account, if it asks for one."
        ),
    )
    smtp_password: str | None = Field(default=None, description="That account's password.")
    smtp_from: str = Field(
        default="labhub@localhost", description="The sender of the reminder e-mails."
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description=(
            "`json` writes one JSON object per log line (for a log collector)."
        ),
    )
    log_file: Path | None = Field(
        default=None,
        description=(
            "Also write the log to this file, rotated by size; empty: standard error only "
            "(systemd's journal)."
        ),
    )
    log_file_max_mb: int = Field(
        default=10, ge=1, le=1024,
        description=(
            "A log file's size before it is rotated, in MB."
        ),
    )
    log_file_keep: int = Field(default=5, ge=1, le=100, description="Rotated log files kept.")

    @field_validator("prune_at", "backup_at", "reminders_at")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        hours, _, minutes = value.strip().partition(":")
        if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2
                and int(hours) < 24 and int(minutes) < 60):
            raise ValueError(f"{value!r} is not a time of day: write HH:MM, as 02:00 or 18:30")
        return f"{int(hours):02d}:{minutes}"

    def clock_time(self, value: str) -> tuple[int, int]:
        """An ``HH:MM`` setting as (hour, minute)."""
        hours, minutes = value.split(":")
        return int(hours), int(minutes)

    def resolved_backup_dir(self) -> Path:
        """The folder the nightly backups go to."""
        return self.backup_dir if self.backup_dir is not None else self.data_dir / "backups"

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, value: list[str]) -> list[str]:
        names = []
        for entry in value:
            name = entry.strip().lower().rstrip(".")
            if not name or any(c in name for c in " /\\@?#[]") or name.count(":") == 1:
                raise ValueError(
                    f"allowed_hosts: {entry!r} is not a host name or address (no scheme, "
                    "port or path: `hub.escuela.edu.co`, `192.168.1.20`)")
            names.append(name)
        return names

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("tls_certfile and tls_keyfile go together: set both, or neither")
        return self

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from exc
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=config_file()),
        )

    def resolved_database_url(self) -> str:
        """The database URL, with the embedded SQLite default filled in."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'labhub.db'}"
