"""The broker as shipped refuses strangers, and each node may only speak for itself.

A real Mosquitto runs ``deploy/mosquitto/labhub.conf`` (paths rewritten to the test's
directory; ``tests/mqtt_broker.py: LabHubBroker``) with the password and ACL files that
``labhub mqtt users`` writes, and the hub connects with its own account. "Nothing
arrived" is proved by a positive control: a message the same client may publish, sent
right after the forbidden one, and waited for.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from fastapi.testclient import TestClient
from mqtt_broker import (  # noqa: F401  (fixture "labhub_broker")
    MOSQUITTO_PASSWD,
    LabHubBroker,
    labhub_broker_fixture,
)
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from signed_in import as_admin
from typer.testing import CliRunner
from waiting import wait_for

from labhub.app import create_app
from labhub.cli import app as cli_app
from labhub.mqtt_accounts import hash_password, verify_password
from labhub.settings import Settings
from labhub.wiring import Hub

SITE = "VC-LP-014"
OTHER_SITE = "AT-MD-002"


class Client:
    """A paho MQTT 5 client with a user name (or none) that records its CONNACK, SUBACKs,
    PUBACKs and messages."""

    def __init__(self, broker: LabHubBroker, client_id: str, user: str | None = None,
                 password: str | None = None) -> None:
        self.lock = threading.Lock()
        self.connack: ReasonCode | None = None
        self.connected = threading.Event()
        self.dropped = threading.Event()  # the connection ended after it was accepted
        self.subacks: list[ReasonCode] = []
        self.pubacks: dict[int, ReasonCode] = {}
        self.got: list[tuple[str, bytes]] = []
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=MQTTProtocolVersion.MQTTv5)
        if user is not None:
            self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_disconnect = lambda *a: self.connected.is_set() and self.dropped.set()
        self.client.connect(broker.broker.host, broker.broker.port)
        self.client.loop_start()
        wait_for(lambda: self.connack is not None, 10, f"CONNACK for {client_id}")

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any,
                    reason: ReasonCode, properties: Properties | None) -> None:
        self.connack = reason
        if not reason.is_failure:
            self.connected.set()
        else:
            client.disconnect()  # no retrying

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int,
                      reasons: list[ReasonCode], properties: Properties | None) -> None:
        with self.lock:
            self.subacks.extend(reasons)

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: ReasonCode,
                    properties: Properties | None) -> None:
        with self.lock:
            self.pubacks[mid] = reason

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.got.append((msg.topic, bytes(msg.payload)))

    def publish(self, topic: str, payload: str) -> ReasonCode:
        """Publish at QoS 1 and return the broker's PUBACK reason."""
        info = self.client.publish(topic, payload, qos=1)
        assert info.rc == paho.MQTT_ERR_SUCCESS, info.rc
        wait_for(lambda: info.mid in self.pubacks, 10, f"the PUBACK for {topic}")
        with self.lock:
            return self.pubacks[info.mid]

    def subscribe(self, topic: str) -> ReasonCode:
        before = len(self.subacks)
        self.client.subscribe(topic, qos=1)
        wait_for(lambda: len(self.subacks) > before, 10, f"the SUBACK for {topic}")
        with self.lock:
            return self.subacks[before]

    def messages(self, topic: str | None = None) -> list[tuple[str, bytes]]:
        with self.lock:
            return [m for m in self.got if topic is None or m[0] == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def secured(labhub_broker: LabHubBroker) -> LabHubBroker:
    """The hub's account, two nodes of SITE, one of OTHER_SITE, a command sender for SITE."""
    labhub_broker.add("add-hub")
    labhub_broker.add("add", "esp32-patio", "--site", SITE)
    labhub_broker.add("add", "esp32-aula", "--site", SITE)
    labhub_broker.add("add", "esp8266-huerta", "--site", OTHER_SITE)
    labhub_broker.add("add", "panel", "--commands", SITE)
    labhub_broker.broker.start()
    return labhub_broker


@pytest.fixture
def hub_client(secured: LabHubBroker, database_url: str,
               tmp_path: Path) -> Iterator[TestClient]:
    """The hub, with MQTT on and its account from ``labhub mqtt users add-hub``."""
    settings = Settings.model_validate({
        "database_url": database_url, "data_dir": str(tmp_path / "data"), "site": SITE,
        "serial_scan": False,
        "mqtt": {"host": secured.broker.host, "port": secured.broker.port,
                 "client_id": "hub-test", "username": "labhub-hub",
                 "password": secured.passwords["labhub-hub"],
                 "reconnect_min_s": 1, "reconnect_max_s": 1},
    })
    with as_admin(TestClient(create_app(settings))) as client:
        hub: Hub = client.app.state.hub  # type: ignore[attr-defined]
        assert hub.mqtt is not None
        bridge = hub.mqtt
        wait_for(lambda: bridge.status.subscribed, 15, "the hub to subscribe",
                 lambda: bridge.status.message)
        # Readings are stored only at sites of the inventory's tree.
        for site in ({"code": "RED", "name": "Red", "kind": "network"},
                     {"code": "RED-R1", "name": "Región", "kind": "region", "parent": "RED"},
                     {"code": SITE, "name": "Lab Point 14", "kind": "site",
                      "parent": "RED-R1", "tier": "lab_point"},
                     {"code": OTHER_SITE, "name": "Lab 2", "kind": "site",
                      "parent": "RED-R1", "tier": "lab_point"}):
            assert client.post("/api/v1/sites", json=site).status_code == 201
        yield client


def _node(broker: LabHubBroker, name: str) -> Client:
    node = Client(broker, name, name, broker.passwords[name])
    assert node.connected.is_set(), node.connack
    return node


def _series(client: TestClient) -> set[tuple[str, str, str, float]]:
    """(device, site, channel, latest value) of every series the hub stored."""
    return {(s["device"], s["site"], s["channel"], s["latest_value"])
            for s in client.get("/api/v1/series").json()}


def _stored(client: TestClient, row: tuple[str, str, str, float]) -> None:
    wait_for(lambda: row in _series(client), 15, f"{row} stored", lambda: _series(client))


# -- strangers ------------------------------------------------------------------------------


def test_anonymous_clients_and_wrong_passwords_are_refused(secured: LabHubBroker) -> None:
    stranger = Client(secured, "stranger")
    try:
        assert stranger.connack is not None and stranger.connack.is_failure
        assert stranger.connack.value in (0x86, 0x87), stranger.connack  # bad login, not authorised
    finally:
        stranger.close()
    guess = Client(secured, "guess", "esp32-patio", "not-the-password")
    try:
        assert guess.connack is not None and guess.connack.is_failure
    finally:
        guess.close()
    node = _node(secured, "esp32-patio")  # the right password gets in: the files are Mosquitto's
    node.close()


# -- nodes ----------------------------------------------------------------------------------


def test_a_node_publishes_its_readings_and_nothing_in_the_name_of_others(
    secured: LabHubBroker, hub_client: TestClient
) -> None:
    patio = _node(secured, "esp32-patio")
    huerta = _node(secured, "esp8266-huerta")
    try:
        own = f"labhub/{SITE}/esp32-patio"
        assert not patio.publish(f"{own}/telemetry", '{"temperature": 23.5}').is_failure
        _stored(hub_client, ("esp32-patio", SITE, "temperature", 23.5))

        # Another node's topic, another site's, and the hub's own state topic: the broker
        # refuses each (MQTT 5 PUBACK "not authorised") and the hub stores nothing of them.
        for topic in (f"labhub/{SITE}/esp32-aula/temperature",
                      f"labhub/{OTHER_SITE}/esp32-patio/temperature",
                      f"labhub/{OTHER_SITE}/esp8266-huerta/temperature",
                      f"{own}/state", "elsewhere/temperature"):
            reason = patio.publish(topic, "99")
            assert reason.is_failure and reason.value == 0x87, (topic, reason)
        assert not patio.publish(f"{own}/temperature", "24.5").is_failure  # the control
        _stored(hub_client, ("esp32-patio", SITE, "temperature", 24.5))
        # ...and the other site's node speaks for itself, under its own site.
        assert not huerta.publish(f"labhub/{OTHER_SITE}/esp8266-huerta/humidity",
                                  "61").is_failure
        _stored(hub_client, ("esp8266-huerta", OTHER_SITE, "humidity", 61.0))
        assert _series(hub_client) == {("esp32-patio", SITE, "temperature", 24.5),
                                       ("esp8266-huerta", OTHER_SITE, "humidity", 61.0)}
        devices = {d["id"] for d in hub_client.get("/api/v1/devices").json()}
        assert "esp32-aula" not in devices

    finally:
        patio.close()
        huerta.close()


def test_a_node_reads_nothing(secured: LabHubBroker, hub_client: TestClient) -> None:
    patio = _node(secured, "esp32-patio")
    aula = _node(secured, "esp32-aula")
    panel = _node(secured, "panel")
    hub = Client(secured, "hub-2", "labhub-hub", secured.passwords["labhub-hub"])
    try:
        # Mosquitto grants any subscription and checks the ACL at each delivery.
        for topic in ("labhub/#", "#"):
            for client in (patio, panel, hub):
                assert not client.subscribe(topic).is_failure
        assert not aula.publish(f"labhub/{SITE}/esp32-aula/temperature", "20").is_failure
        assert not panel.publish(f"labhub/{SITE}/esp32-patio/cmd", "{}").is_failure
        wait_for(lambda: len(hub.messages()) >= 2, 10, "both at the hub's account",
                 hub.messages)
        # The broker handled both before the hub's copies went out; what it queued for the
        # node then would reach it before the PUBACK of anything the node sends after.
        assert not patio.publish(f"labhub/{SITE}/esp32-patio/temperature", "21").is_failure
        assert patio.messages() == []
        # A command sender reads only the replies: the one to its command, after the rest.
        assert not panel.publish(f"labhub/{SITE}/robot/cmd", '{"id": "last"}').is_failure
        wait_for(lambda: any(b'"last"' in p for _, p in panel.messages()), 10, "the reply")
        assert {t for t, _ in panel.messages()} <= {f"labhub/{SITE}/esp32-patio/cmd/reply",
                                                   f"labhub/{SITE}/robot/cmd/reply"}
    finally:
        for c in (patio, aula, panel, hub):
            c.close()


def test_a_node_cannot_command_a_kit_but_a_command_sender_can(
    secured: LabHubBroker, hub_client: TestClient
) -> None:
    hub: Hub = hub_client.app.state.hub  # type: ignore[attr-defined]
    assert hub.commands is not None
    patio = _node(secured, "esp32-patio")
    panel = _node(secured, "panel")
    try:
        assert not panel.subscribe(f"labhub/{SITE}/+/cmd/reply").is_failure
        assert not panel.subscribe(f"labhub/{SITE}/+/rpc/response/+").is_failure
        forbidden = [(f"labhub/{SITE}/robot/cmd", {"command": "stop_all", "id": "node"}),
                     (f"labhub/{SITE}/esp32-patio/cmd", {"command": "stop_all", "id": "own"}),
                     (f"labhub/{SITE}/robot/rpc/request/7", {"method": "stopAll"})]
        for topic, body in forbidden:
            reason = patio.publish(topic, json.dumps(body))
            assert reason.is_failure and reason.value == 0x87, (topic, reason)
        # The control: the same command from the account allowed to send it.
        assert not panel.publish(f"labhub/{SITE}/robot/cmd",
                                 json.dumps({"command": "stop_all", "id": "panel"})
                                 ).is_failure
        assert not panel.publish(f"labhub/{SITE}/robot/rpc/request/8",
                                 json.dumps({"method": "stopAll"})).is_failure
        reply, response = f"labhub/{SITE}/robot/cmd/reply", f"labhub/{SITE}/robot/rpc/response/8"
        wait_for(lambda: bool(panel.messages(reply)) and bool(panel.messages(response)), 15,
                 "the replies to the command sender", panel.messages)
        # The hub answered (robot is no kit of this hub: refused with a reason), once each.
        answered = [json.loads(p) for _, p in panel.messages()]
        assert [a["id"] for a in answered] == ["panel", "8"], answered
        assert all(a["ok"] is False for a in answered)
        assert hub.commands.stats.done + hub.commands.stats.refused == 2
        # ...and a command sender has no other rights: no readings, no other site's kits.
        assert panel.publish(f"labhub/{SITE}/panel/temperature", "1").value == 0x87
        assert panel.publish(f"labhub/{OTHER_SITE}/robot/cmd", "{}").value == 0x87
    finally:
        patio.close()
        panel.close()


def test_the_hubs_account_reads_every_site_and_node(
    secured: LabHubBroker, hub_client: TestClient
) -> None:
    hub = Client(secured, "hub-2", "labhub-hub", secured.passwords["labhub-hub"])
    aula = _node(secured, "esp32-aula")
    try:
        assert not hub.subscribe("labhub/#").is_failure
        assert not hub.subscribe("homeassistant/#").is_failure
        assert not aula.publish(f"labhub/{SITE}/esp32-aula/telemetry",
                                '{"co2": 612}').is_failure
        assert not hub.publish(f"labhub/{OTHER_SITE}/robot/cmd", "{}").is_failure
        wait_for(lambda: len(hub.messages()) >= 2, 10, "both messages at the hub's account")
        _stored(hub_client, ("esp32-aula", SITE, "co2", 612.0))
    finally:
        hub.close()
        aula.close()


# -- the command: files Mosquitto takes, idempotent, reloaded on request ------------------------


def test_accounts_added_and_removed_while_the_broker_runs_after_a_reload(
    secured: LabHubBroker,
) -> None:
    pid = str(secured.broker.pid)
    password = secured.add("add", "esp32-nuevo", "--site", SITE, "--reload-pid", pid)

    def logs_in(user: str, secret: str) -> bool:
        attempt = Client(secured, f"try-{user}", user, secret)
        attempt.close()
        return attempt.connected.is_set()

    wait_for(lambda: logs_in("esp32-nuevo", password), 10, "the new node let in")
    online = _node(secured, "esp32-nuevo")
    try:
        output = secured.users("remove", "esp32-nuevo", "--reload-pid", pid)
        assert "removed 'esp32-nuevo'" in output and "sent SIGHUP" in output
        # The broker closes the removed user's connection, and refuses the next one.
        assert online.dropped.wait(10), "the removed node's connection stayed open"
    finally:
        online.close()
    wait_for(lambda: not logs_in("esp32-nuevo", password), 10, "the removed node refused")
    assert logs_in("esp32-patio", secured.passwords["esp32-patio"])
    # A password of one's own, from stdin.
    secured.users("add", "panel-2", "--commands", SITE, "--password-stdin", "--reload-pid",
                  pid, stdin="una clave larga\n")
    wait_for(lambda: logs_in("panel-2", "una clave larga"), 10, "the chosen password")


def test_adding_and_removing_twice_is_the_same_as_once(labhub_broker: LabHubBroker) -> None:
    labhub_broker.add("add", "esp32-patio", "--site", SITE)
    hashed = labhub_broker.passwd_file.read_text()
    acl = labhub_broker.acl_file.read_text()
    again = labhub_broker.users("add", "esp32-patio", "--site", SITE)
    assert "password unchanged" in again and "password:" not in again
    assert labhub_broker.passwd_file.read_text() == hashed
    assert labhub_broker.acl_file.read_text() == acl
    # Running it with other rights replaces them.
    labhub_broker.users("add", "esp32-patio", "--site", OTHER_SITE, "--device", "patio-2")
    text = labhub_broker.acl_file.read_text()
    assert f"topic write labhub/{OTHER_SITE}/patio-2/#" in text and SITE not in text
    assert labhub_broker.users("remove", "esp32-patio").startswith("removed")
    assert "nothing to remove" in labhub_broker.users("remove", "esp32-patio")
    assert "esp32-patio" not in labhub_broker.acl_file.read_text()
    assert labhub_broker.passwd_file.read_text() == ""
    assert labhub_broker.users("list").strip().endswith("0 accounts")


def test_a_line_added_by_hand_is_kept_and_listed(labhub_broker: LabHubBroker) -> None:
    labhub_broker.passwd_file.parent.mkdir(parents=True)
    labhub_broker.passwd_file.write_text(f"legacy:{hash_password('x')}\n")
    labhub_broker.add("add-hub", "central")
    listed = labhub_broker.users("list")
    assert "central" in listed and "hub" in listed
    assert "legacy" in listed and "no ACL entries" in listed
    assert labhub_broker.passwd_file.read_text().startswith("legacy:$7$")


@pytest.mark.parametrize("args", [
    ["add", "esp/32", "--site", SITE], ["add", "esp32", "--site", "lab#1"],
    ["add", "esp32"], ["add", "esp32", "--device", "x", "--commands", SITE],
    ["add", "es p", "--site", SITE], ["add-hub", "a:b"]])
def test_names_that_would_break_a_topic_or_a_file_are_refused(
    args: list[str], tmp_path: Path
) -> None:
    result = CliRunner().invoke(cli_app, ["mqtt", "users", *args, "--passwd-file",
                                          str(tmp_path / "p"), "--acl-file",
                                          str(tmp_path / "a")],
                                env={"LABHUB_CONFIG": "/dev/null"})
    assert result.exit_code == 1, result.output
    assert not (tmp_path / "p").exists()


def test_an_acl_file_labhub_did_not_write_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("user admin\ntopic #\n")
    result = CliRunner().invoke(cli_app, ["mqtt", "users", "add", "n", "--site", SITE,
                                          "--passwd-file", str(tmp_path / "p"),
                                          "--acl-file", str(tmp_path / "a")],
                                env={"LABHUB_CONFIG": "/dev/null"})
    assert result.exit_code == 1 and "not written by labhub" in result.output
    assert (tmp_path / "a").read_text() == "user admin\ntopic #\n"


def test_the_hash_is_the_one_mosquitto_passwd_writes(tmp_path: Path) -> None:
    hashed = hash_password("s3cret")
    assert verify_password("s3cret", hashed) and not verify_password("s3cre", hashed)
    if shutil.which(MOSQUITTO_PASSWD) is None:
        pytest.skip("no mosquitto_passwd to compare with (LabHub does not need it)")
    target = tmp_path / "p"
    subprocess.run([MOSQUITTO_PASSWD, "-b", "-c", str(target), "u", "s3cret"], check=True)
    theirs = target.read_text().strip().split(":", 1)[1]
    assert theirs.startswith("$7$101$")
    assert verify_password("s3cret", theirs)
    salt = __import__("base64").b64decode(theirs.split("$")[3])
    assert hash_password("s3cret", salt=salt) == theirs  # same salt: the very same line
