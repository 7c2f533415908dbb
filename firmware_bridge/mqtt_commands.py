"""Commands to robotics kits over MQTT: the same commands and safety rules as the API.

Two ways in, one way to the board:

- ``<prefix>/<site>/<device>/cmd`` with the JSON body ``POST /api/v1/devices/{id}/commands``
  takes: ``{"command": "servo", "pin": 9, "value": 90}`` (``digital_write``, ``pwm``,
  ``servo``, ``stop_all``), optionally with an ``"id"`` that the reply repeats. The reply
  goes to ``.../cmd/reply``: ``{"ok": true, "id": ..., "device": ..., "writes": [{"pin": 9,
  "kind": "servo", "value": 90.0, "clamped": false}]}`` or ``{"ok": false, "id": ...,
  "error": "<why>"}``.
- ThingsBoard-style RPC: ``.../rpc/request/<id>`` with ``{"method": "servo", "params":
  {"pin": 9, "value": 90}}`` (methods are the command names, and ThingsBoard-style
  ``setServo``, ``setPwm``, ``digitalWrite``/``setDigital``, ``stopAll``); the reply goes
  to ``.../rpc/response/<id>`` with the same body as above.

Every command goes to the callable the app gives (the hub's supervisor, the path the API
takes), which checks it against the device's declared outputs with
``firmware_bridge.actuators``: a pin not declared is refused, a servo angle is clamped.
A command that does not parse, is not allowed, or finds the board unplugged gets an error
reply and a warning in the log; nothing raises into the bridge. Retained messages are
never commands (a retained ``cmd`` would replay at every reconnect): the bridge skips them.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from firmware_bridge.actuators import CommandError, CommandName, PinCommand

if TYPE_CHECKING:
    from firmware_bridge.mqtt import MqttBridge, MqttSettings

log = logging.getLogger(__name__)

MAX_COMMAND_BYTES = 4096  # a command is a few dozen bytes; more is not a command
MAX_ID_CHARS = 100  # a correlation id is echoed back: keep it short
RPC_METHODS: dict[str, CommandName] = {
    "digital_write": "digital_write", "digitalWrite": "digital_write",
    "setDigital": "digital_write", "pwm": "pwm", "setPwm": "pwm", "servo": "servo",
    "setServo": "servo", "stop_all": "stop_all", "stopAll": "stop_all",
}

# run(site, device, command, pin, value) -> the writes; raises CommandError when the
# device's settings forbid it, or any other error when the board cannot take it now
RunCommand = Callable[[str, str, CommandName, "int | None", "float | None"], list[PinCommand]]


class CommandBody(BaseModel):
    """A command as JSON: what ``POST /api/v1/devices/{id}/commands`` takes, plus an id."""

    model_config = ConfigDict(extra="forbid")

    command: CommandName
    pin: int | None = Field(default=None, ge=0, le=127)
    value: float | None = None
    id: str | int | None = None


class RpcParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pin: int | None = Field(default=None, ge=0, le=127)
    value: float | None = None
    angle: float | None = None  # setServo's usual name for the value


class RpcBody(BaseModel):
    model_config = ConfigDict(extra="ignore")  # ThingsBoard clients may add fields

    method: str
    params: RpcParams | None = None


@dataclass(frozen=True, slots=True)
class CommandTopic:
    """Where a command arrived, and where its reply goes."""

    site: str
    device: str
    kind: Literal["cmd", "rpc"]
    reply_topic: str
    request_id: str | None = None


def parse_command_topic(prefix: str, topic: str) -> CommandTopic | None:
    """The command topic ``topic`` is, or None when it is none."""
    if not topic.startswith(prefix + "/"):
        return None
    parts = topic[len(prefix) + 1 :].split("/")
    if len(parts) == 3 and parts[2] == "cmd" and parts[0] and parts[1]:
        return CommandTopic(parts[0], parts[1], "cmd", f"{topic}/reply")
    if (len(parts) == 5 and parts[2:4] == ["rpc", "request"] and parts[0] and parts[1]
            and parts[4]):
        base = f"{prefix}/{parts[0]}/{parts[1]}"
        return CommandTopic(parts[0], parts[1], "rpc", f"{base}/rpc/response/{parts[4]}",
                            parts[4])
    return None


def _reason(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return f"{where}: {first['msg']}"


@dataclass(slots=True)
class CommandStats:
    """Commands taken over MQTT since the hub started."""

    done: int = 0
    refused: int = 0  # not allowed, not parsed, or the board could not take it


class MqttCommands:
    """Takes commands on the ``cmd`` and RPC topics; an
    :class:`~firmware_bridge.mqtt.MqttExtension`. See the module docstring."""

    def __init__(self, run: RunCommand) -> None:
        self._run = run
        self._lock = threading.Lock()
        self.stats = CommandStats()

    def subscriptions(self, settings: MqttSettings) -> list[str]:
        # ``.../cmd`` is already under the node filter <prefix>/+/+/+; RPC is deeper.
        return [f"{settings.topic_prefix}/+/+/rpc/request/+"]

    def retained_subscriptions(self, settings: MqttSettings) -> list[str]:
        return []

    def connected(self, bridge: MqttBridge) -> None:
        return None

    def handle(self, bridge: MqttBridge, topic: str, payload: bytes) -> bool:
        where = parse_command_topic(bridge.settings.topic_prefix, topic)
        if where is None:
            return False
        reply = self.execute(where, payload)
        body = json.dumps(reply, ensure_ascii=False, allow_nan=False).encode()
        if not bridge.publish(where.reply_topic, body):
            log.warning("the reply to a command on %s could not be sent", topic)
        return True

    def execute(self, where: CommandTopic, payload: bytes) -> dict[str, Any]:
        """Parse and run one command; the reply document (never raises). A command's own
        ``id`` is echoed even when the rest of it is refused."""
        request_id: Any = where.request_id
        try:
            document = _load(payload)
            if where.kind == "cmd":
                request_id = _id_of(document)
            command, pin, value = _parse(where, document)
            writes = self._run(where.site, where.device, command, pin, value)
        except (CommandError, _BadCommandError) as exc:
            return self._refuse(where, request_id, str(exc))
        except Exception as exc:  # the board is unplugged, or not a Firmata board
            return self._refuse(where, request_id, str(exc) or type(exc).__name__)
        with self._lock:
            self.stats.done += 1
        log.info("MQTT command to %s: %s", where.device, command)
        return {
            "ok": True, "id": request_id, "device": where.device,
            "writes": [{"pin": w.pin, "kind": w.kind, "value": w.value, "clamped": w.clamped}
                       for w in writes],
        }

    def _refuse(self, where: CommandTopic, request_id: Any, reason: str) -> dict[str, Any]:
        with self._lock:
            self.stats.refused += 1
        log.warning("MQTT command to %s refused: %s", where.device, reason)
        return {"ok": False, "id": request_id, "device": where.device, "error": reason}


def _load(payload: bytes) -> Any:
    if len(payload) > MAX_COMMAND_BYTES:
        raise _BadCommandError(f"a command is at most {MAX_COMMAND_BYTES} bytes")
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):
        raise _BadCommandError("not JSON: send e.g. "
                               '{"command": "servo", "pin": 9, "value": 90}') from None


def _id_of(document: Any) -> str | int | None:
    """A ``cmd`` body's ``id``, when it is one that can be echoed."""
    given = document.get("id") if isinstance(document, dict) else None
    if isinstance(given, bool) or not isinstance(given, str | int):
        return None
    if isinstance(given, str) and len(given) > MAX_ID_CHARS:
        raise _BadCommandError(f"id: at most {MAX_ID_CHARS} characters")
    return given


def _parse(where: CommandTopic, document: Any) -> tuple[CommandName, int | None, float | None]:
    try:
        if where.kind == "cmd":
            body = CommandBody.model_validate(document)
            return body.command, body.pin, body.value
        rpc = RpcBody.model_validate(document)
    except ValidationError as exc:
        raise _BadCommandError(_reason(exc)) from None
    command = RPC_METHODS.get(rpc.method)
    if command is None:
        raise _BadCommandError(f"unknown method {rpc.method[:40]!r}; known: "
                               f"{', '.join(RPC_METHODS)}")
    params = rpc.params or RpcParams()
    value = params.value if params.value is not None else params.angle
    return command, params.pin, value


class _BadCommandError(ValueError):
    """A command that does not parse."""


__all__ = ["RPC_METHODS", "CommandBody", "CommandTopic", "MqttCommands", "RunCommand",
           "parse_command_topic"]
