"""The API's edge on every backend, swept over every operation of the app: deeply nested
JSON, NUL in any path, query or body, bodies past their size limit (declared or chunked),
booleans where numbers and times go, control characters in names. Each is a 4xx
problem+json that says where; none is a 500."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from signed_in import as_admin
from sqlalchemy import create_engine

from firmware_bridge import registry
from labhub.app import create_app
from labhub.settings import Settings

PROBLEM = "application/problem+json"
V1 = "/api/v1"
JSON_LIMIT = 4096  # small limits keep the sweep cheap; the rule is the same at any size
UPLOAD_LIMIT = 65_536
UPLOADS = {("post", f"{V1}/readings"), ("post", f"{V1}/devices/{{device}}/data"),
           ("post", f"{V1}/import/{{kind}}")}


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url,
                        max_json_body_bytes=JSON_LIMIT, max_body_bytes=UPLOAD_LIMIT)
    with as_admin(TestClient(create_app(settings), raise_server_exceptions=False)) as c:
        yield c


def _operations(client: TestClient) -> list[tuple[str, str, dict[str, Any]]]:
    """Every operation of the app: (method, path template, its OpenAPI operation)."""
    spec = client.get("/openapi.json").json()
    found = [(method, path, op) for path, ops in spec["paths"].items()
             for method, op in ops.items()]
    assert len(found) > 80  # the sweep covers the whole API, not a few routes
    return found


def _fill(path: str, **values: str) -> str:
    return re.sub(r"\{([^}:]+)(?::[^}]*)?\}", lambda m: values.get(m.group(1), "x"), path)


def _problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.request.method, r.request.url, r.text)
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, Any] = r.json()
    return body


def _json_bodies(client: TestClient) -> list[tuple[str, str]]:
    return [(m, p) for m, p, op in _operations(client)
            if "application/json" in op.get("requestBody", {}).get("content", {})
            and (m, p) not in UPLOADS]


def _rejects(client: TestClient, **params: str) -> dict[str, Any]:
    answer: dict[str, Any] = client.get(f"{V1}/rejects", params=params).json()
    return answer


# -- 1. nesting ---------------------------------------------------------------------------


def test_deeply_nested_json_is_a_4xx_on_every_json_route(
    database_url: str, tmp_path: Path
) -> None:
    nested = b"[" * 100_000  # past the JSON limit of the sweep: the default limits here
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url)
    with as_admin(TestClient(create_app(settings), raise_server_exceptions=False)) as client:
        r = client.post(f"{V1}/readings", content=nested,
                        headers={"content-type": "application/json"})
        assert "nested too deeply" in _problem(r, 400)["detail"]
        [letter] = _rejects(client)["items"]
        assert "nested too deeply" in letter["reason"]
        assert letter["payload_bytes"] == len(nested)
        for method, path in _json_bodies(client):
            r = client.request(method, _fill(path), content=nested,
                               headers={"content-type": "application/json"})
            assert 400 <= r.status_code < 500, (method, path, r.status_code, r.text)
            assert r.headers["content-type"] == PROBLEM


# -- 3. NUL -------------------------------------------------------------------------------


def test_nul_in_any_path_or_query_parameter_is_a_422_naming_it(client: TestClient) -> None:
    swept = 0
    for method, path, op in _operations(client):
        # a body of a type the operation takes (a CSV import takes no JSON: that is a 415)
        media = next(iter(op.get("requestBody", {}).get("content", {"application/json": 0})))
        body = {"content": b"{}", "headers": {"content-type": media}}
        # An integer in the path (a class id) is a number or no route at all: no text.
        numbers = {p["name"]: "1" for p in op.get("parameters", [])
                   if p["in"] == "path" and p["schema"].get("type") == "integer"}
        for param in op.get("parameters", []):
            if param["in"] == "path" and param["name"] not in numbers:
                r = client.request(method, _fill(path, **numbers, **{param["name"]: "a%00b"}),
                                   **body)
            elif param["in"] == "query":
                r = client.request(method, _fill(path, **numbers),
                                   params={param["name"]: "a\x00b"}, **body)
            else:
                continue
            where = f"{param['in']}.{param['name']}"
            problem = _problem(r, 422)
            assert problem["errors"] == [{"where": where, "message": "holds a control "
                                          "character (U+0000) at position 2"}], (path, r.text)
            swept += 1
    assert swept > 100


@pytest.mark.parametrize("char", ["\u001b", "\u009b", "\u202e", "\u007f"])
def test_a_control_character_in_a_path_or_query_is_a_422_naming_it(
    client: TestClient, char: str
) -> None:
    text = quote(f"a{char}b")
    for url, where in [(f"{V1}/sites/{text}", "path.code"),
                       (f"{V1}/assets?search={text}", "query.search"),
                       (f"{V1}/export/history.csv?subject={text}", "query.subject"),
                       (f"{V1}/series?quantity={text}", "query.quantity")]:
        r = client.get(url)
        assert f"{where}: holds a" in _problem(r, 422)["detail"], url


def test_a_tab_or_line_break_in_a_query_is_the_schemas_to_judge(client: TestClient) -> None:
    r = client.delete(f"{V1}/sites/N", params={"note": "uno\ndos"})
    assert _problem(r, 404)
    r = client.delete(f"{V1}/sites/N", params={"note": "uno\u0000dos"})
    assert "query.note: holds a control character (U+0000)" in _problem(r, 422)["detail"]


@pytest.mark.parametrize(
    ("path", "body", "where"),
    [
        ("/runs", {"title": "Sol\u0000", "channels": [{"device": "d"}]}, "body.title"),
        ("/runs", {"title": "Sol", "group": "7\u0000B", "channels": [{"device": "d"}]},
         "body.group"),
        ("/runs", {"title": "Sol", "channels": [{"device": "d\u0000"}]},
         "body.channels.0.device"),
        ("/stock/consume", {"site": "VL-LP-1", "model": "JMP\u0000", "quantity": 1},
         "body.model"),
        ("/sites", {"code": "N", "name": "Red", "kind": "network", "\u0000": 1},
         "body"),
    ],
)
def test_nul_in_a_json_body_is_a_422_naming_the_field(
    client: TestClient, path: str, body: dict[str, Any], where: str
) -> None:
    problem = _problem(client.post(f"{V1}{path}", json=body), 422)
    assert problem["errors"][0]["where"] == where
    assert client.get(f"{V1}/runs").json()["total"] == 0


def test_nul_in_a_run_note_is_a_422_and_nothing_is_stored(client: TestClient) -> None:
    run = client.post(f"{V1}/runs", json={"title": "Sol", "channels": [{"device": "d"}]}).json()
    problem = _problem(client.post(f"{V1}/runs/{run['id']}/notes", json={"text": "a\u0000"}),
                       422)
    assert problem["errors"][0]["where"] == "body.text"
    assert client.get(f"{V1}/runs/{run['id']}").json()["notes"] == []


# -- 4. body limits -----------------------------------------------------------------------


def test_every_json_route_refuses_a_body_past_its_limit(client: TestClient) -> None:
    too_big = b'{"pad": "' + b"x" * JSON_LIMIT + b'"}'
    routes = _json_bodies(client)
    assert len(routes) > 30
    for method, path in routes:
        r = client.request(method, _fill(path), content=too_big,
                           headers={"content-type": "application/json"})
        detail = _problem(r, 413)["detail"]
        assert f"over {JSON_LIMIT} bytes" in detail and "max_json_body_bytes" in detail


def test_uploads_take_bodies_up_to_their_own_larger_limit(client: TestClient) -> None:
    readings = [{"channel": "temp", "value": 20.0, "ts": 1_772_373_600 + i} for i in range(300)]
    r = client.post(f"{V1}/readings", json={"device": "d", "readings": readings})
    assert len(r.request.content) > JSON_LIMIT and r.status_code == 200, r.text
    lines = b"".join(b"temp:%d\n" % i for i in range(1000))
    assert len(lines) > JSON_LIMIT
    r = client.post(f"{V1}/devices/d/data", params={"format": "plotter"}, content=lines)
    assert r.status_code == 200, r.text
    for path in (f"{V1}/readings", f"{V1}/devices/d/data", f"{V1}/import/sites"):
        r = client.post(path, content=b"x" * (UPLOAD_LIMIT + 1))
        assert "max_body_bytes" in _problem(r, 413)["detail"]


@pytest.mark.parametrize(("path", "limit"), [("/api/v1/sites", JSON_LIMIT),
                                             ("/api/v1/readings", UPLOAD_LIMIT)])
def test_a_chunked_body_is_refused_as_it_streams_in(
    client: TestClient, path: str, limit: int
) -> None:
    # No Content-Length: the body keeps coming; the hub must stop reading at its limit.
    chunk = b"x" * 1024
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        assert pulled < 10_000, "the hub kept reading a body past its limit"
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
             "root_path": "", "query_string": b"", "server": ("testserver", 80),
             "client": ("127.0.0.1", 5000),
             "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"),
                         (b"transfer-encoding", b"chunked"),
                         (b"authorization", client.headers["authorization"].encode())]}
    assert client.portal is not None
    client.portal.call(client.app, scope, receive, send)
    assert sent[0]["status"] == 413
    assert pulled == limit // len(chunk) + 1


def test_the_list_of_dead_letters_carries_no_payloads_unless_asked(
    client: TestClient,
) -> None:
    big_bad = b"{" + b"x" * (UPLOAD_LIMIT - 10)
    for _ in range(6):
        assert client.post(f"{V1}/readings", content=big_bad,
                           headers={"content-type": "application/json"}).status_code == 400
    r = client.get(f"{V1}/rejects", params={"limit": 5})
    page = r.json()
    assert page["total"] == 6 and len(page["items"]) == 5
    assert len(r.content) < 5 * 1024  # reasons and sizes, not bodies
    assert all(i["payload"] is None and i["payload_bytes"] == len(big_bad)
               and i["payload_truncated"] is False for i in page["items"])
    full = _rejects(client, limit="1", with_payload="true")["items"][0]
    assert full["payload"] == big_bad.decode()


# -- 5. wrong types -----------------------------------------------------------------------


def test_a_boolean_is_not_a_reading_and_is_dead_lettered(client: TestClient) -> None:
    r = client.post(f"{V1}/readings", json={"device": "d", "readings": [
        {"channel": "door", "value": True, "ts": 1_772_373_600}]})
    problem = _problem(r, 422)
    assert problem["errors"][0]["where"] == "readings.0.value"
    assert "true is a boolean, not a number" in problem["detail"]
    [letter] = _rejects(client)["items"]
    assert "boolean" in letter["reason"] and letter["device"] == "d"
    assert client.get(f"{V1}/series").json() == []
    # A "1" in a line of text is a number, as it always was.
    r = client.post(f"{V1}/devices/d/data", params={"format": "csv"}, content=b"door\n1\n")
    assert r.status_code == 200 and r.json()["accepted"] == 1


@pytest.mark.parametrize(
    ("path", "body", "where"),
    [
        ("/runs", {"title": "Sol", "channels": [{"device": "d"}], "started_at": False},
         "body.started_at"),
        ("/loans", {"items": ["VC-1"], "borrower": "Marta", "due": True},
         "body.due"),
        ("/sites", {"code": "N", "name": "Red", "kind": "network",
                    "latitude": True}, "body.latitude"),
        # A robot command: true is neither pin 1 nor full power.
        ("/devices/kit/commands", {"command": "servo", "pin": True, "value": 90}, "body.pin"),
        ("/devices/kit/commands", {"command": "pwm", "pin": 5, "value": True}, "body.value"),
    ],
)
def test_a_boolean_is_not_a_time_or_a_number_in_any_body(
    client: TestClient, path: str, body: dict[str, Any], where: str
) -> None:
    problem = _problem(client.post(f"{V1}{path}", json=body), 422)
    assert f"{where}: Value error, true is a boolean" in problem["detail"] or (
        f"{where}: Value error, false is a boolean" in problem["detail"]), problem


def test_a_note_with_a_boolean_time_is_refused_not_stored_in_1970(client: TestClient) -> None:
    run = client.post(f"{V1}/runs", json={"title": "Sol", "channels": [{"device": "d"}]}).json()
    r = client.post(f"{V1}/runs/{run['id']}/notes", json={"text": "sombra", "ts": True})
    assert "true is a boolean, not a time" in _problem(r, 422)["detail"]
    assert client.get(f"{V1}/runs/{run['id']}").json()["notes"] == []


@pytest.mark.parametrize(("start", "words"), [
    ("-1e18", "before the year 1"), ("1e18", "after the year 9999"),
    ("-99999999999", "before the year 1")])
def test_a_time_out_of_range_says_which_end(client: TestClient, start: str, words: str) -> None:
    client.post(f"{V1}/readings", json={"device": "d", "readings": [
        {"channel": "t", "value": 1.0, "ts": 1_772_373_600}]})
    r = client.get(f"{V1}/readings", params={"device": "d", "channel": "t", "start": start})
    assert words in _problem(r, 422)["detail"]


# -- 6. control characters in names -------------------------------------------------------


@pytest.mark.parametrize("name", ["Esta\u001b[2Jción", "Esta\u009bción", "Estación\u202e",
                                  "Esta\u2066ción", "Esta\u0085ción"])
def test_names_and_titles_refuse_control_and_bidirectional_characters(
    client: TestClient, database_url: str, name: str
) -> None:
    r = client.post(f"{V1}/runs", json={"title": name, "channels": [{"device": "d"}]})
    assert "body.title: holds a" in _problem(r, 422)["detail"]
    r = client.post(f"{V1}/runs", json={"title": "Sol", "group": name,
                                        "channels": [{"device": "d"}]})
    assert "body.group: holds a" in _problem(r, 422)["detail"]
    r = client.post(f"{V1}/sites", json={"code": "N", "name": name, "kind": "network"})
    assert "body.name: holds a" in _problem(r, 422)["detail"]
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            registry.record_seen(conn=conn, device_id="uno-1", kind="lines")
    finally:
        engine.dispose()
    r = client.patch(f"{V1}/devices/uno-1", json={"name": name})
    assert "body.name: holds a" in _problem(r, 422)["detail"]
    r = client.patch(f"{V1}/devices/uno-1", json={"site": name})
    assert "body.site: " in _problem(r, 422)["detail"]
    assert client.get(f"{V1}/runs").json()["total"] == 0
    assert client.get(f"{V1}/sites").json() == []


def test_a_note_keeps_its_lines_and_tabs_but_no_other_control(client: TestClient) -> None:
    run = client.post(f"{V1}/runs", json={"title": "Sol", "channels": [{"device": "d"}]}).json()
    r = client.post(f"{V1}/runs/{run['id']}/notes", json={"text": "10:42\tsombra\nluego sol"})
    assert r.status_code == 201 and r.json()["text"] == "10:42\tsombra\nluego sol"
    r = client.post(f"{V1}/runs/{run['id']}/notes", json={"text": "sombra\u001b[2J"})
    assert "body.text: holds a control character (U+001B) at position 7" in _problem(
        r, 422)["detail"]


def test_a_write_is_committed_before_its_response_is_sent(database_url: str,
                                                          tmp_path: Path) -> None:
    """A 2xx means stored: the transaction of a write route commits before the response
    starts, so a client's next request sees the row, and a commit that fails is an error
    response, not a 201 for a rolled-back write."""
    from sqlalchemy import text
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    seen: list[int] = []  # sites another connection sees as the response starts

    def recording(app: ASGIApp) -> ASGIApp:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            async def noting_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    with check.connect() as conn:
                        seen.append(conn.execute(text(
                            "SELECT count(*) FROM sites WHERE code = 'VL'")).scalar_one())
                await send(message)
            await app(scope, receive, noting_send)
        return wrapped

    settings = Settings(data_dir=tmp_path / "data", database_url=database_url)
    check = create_engine(settings.resolved_database_url())
    app = create_app(settings)
    app.add_middleware(recording)  # type: ignore[arg-type]
    try:
        with as_admin(TestClient(app, raise_server_exceptions=False)) as c:
            r = c.post(f"{V1}/sites", json={"code": "VL", "name": "ValleLabs",
                                            "kind": "network"})
            assert r.status_code == 201, r.text
    finally:
        check.dispose()
    assert seen == [1], "the response started before the new site was committed"
