"""The hub's edges on a school network: the ``Host`` allow-list (DNS rebinding), 415 for a
body a route does not read (cross-site forms and ``text/plain`` posts), the security
headers of every answer, the docs pages without inline script, and HTTPS from a real
``labhub serve`` process (its own certificate, or a reverse proxy's word)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient
from mqtt_broker import free_port
from signed_in import as_admin
from sqlalchemy import Engine, func, select
from waiting import wait_for

from labhub import db
from labhub.access.tables import audit_log
from labhub.api import edge
from labhub.app import create_app
from labhub.settings import Settings

V1 = "/api/v1"
PROBLEM = "application/problem+json"
LABHUB = str(Path(sys.executable).with_name("labhub"))
SITE = {"code": "VL", "name": "ValleLabs", "kind": "network"}
SITE_JSON = b'{"code": "VL", "name": "ValleLabs", "kind": "network"}'
READINGS_JSON = b'{"device": "d", "readings": [{"channel": "t", "value": 1, "ts": 1772373600}]}'


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with as_admin(TestClient(create_app(settings), raise_server_exceptions=False)) as c:
        yield c


def _rows(engine: Engine) -> dict[str, int]:
    """Rows of every table of the hub (readings, dead letters, inventory, ...)."""
    with engine.connect() as conn:
        return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                for m in db.ALL_METADATA for t in m.sorted_tables}


def _problem(r: httpx2.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.request.method, r.request.url, r.text)
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, Any] = r.json()
    return body


# -- Host -----------------------------------------------------------------------------------


def test_a_foreign_host_is_a_400_before_any_route_and_changes_nothing(
    client: TestClient, engine: Engine
) -> None:
    before = _rows(engine)
    evil = {"host": "evil.example"}
    for method, path, kwargs in [
        ("POST", f"{V1}/sites", {"json": SITE}),
        ("POST", f"{V1}/readings", {"content": READINGS_JSON,
                                     "headers": {"content-type": "application/json"}}),
        ("POST", f"{V1}/devices/d/data", {"content": b"t:1\n"}),
        ("POST", f"{V1}/import/sites", {"content": b"code,name,kind\nVL,V,network\n",
                                               "headers": {"content-type": "text/csv"}}),
        ("GET", f"{V1}/health", {}),
        ("GET", "/docs", {}),
        ("GET", "/nowhere", {}),
    ]:
        headers = {**kwargs.pop("headers", {}), **evil}
        problem = _problem(client.request(method, path, headers=headers, **kwargs), 400)
        assert problem["detail"] == ("this hub does not answer to host 'evil.example'; "
                                     "add it to allowed_hosts")
    for header in ("evil.example:8000", "EVIL.example.", "localhost.evil.example",
                   "testserver.evil.example"):
        r = client.get(f"{V1}/health", headers={"host": header})
        assert r.status_code == 400, header
    after = _rows(engine)
    # Nothing changed but the audit log, which has the refusals (one a minute for each
    # address, path and status: a flood cannot fill it).
    assert {**after, "audit_log": 0} == {**before, "audit_log": 0}
    with engine.connect() as conn:
        entries = conn.execute(select(audit_log.c.target, audit_log.c.outcome,
                                      audit_log.c.detail)
                               .where(audit_log.c.action == "refused")).all()
    assert after["audit_log"] - before["audit_log"] == len(entries) == 7  # 7 paths
    assert {e.target for e in entries} == {f"{V1}/sites", f"{V1}/readings",
                                           f"{V1}/devices/d/data", f"{V1}/import/sites",
                                           f"{V1}/health", "/docs", "/nowhere"}
    assert all(e.outcome == "400" and "host 'evil.example' is not in allowed_hosts"
               in str(e.detail) for e in entries)
    # the very same write, to a host the hub answers to, is stored: the Host decided
    assert client.post(f"{V1}/sites", json=SITE).status_code == 201
    assert _rows(engine)["sites"] == before["sites"] + 1


def test_the_default_list_is_this_computer_and_any_address(
    database_url: str, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url,
                        allowed_hosts=[], serial_scan=False)  # [] is the default
    name = socket.gethostname().lower()
    assert {"localhost", "127.0.0.1", "::1", name, f"{name}.local"} <= set(
        edge.allowed_hosts(settings))
    assert "testserver" not in edge.allowed_hosts(settings)
    lab = settings.model_copy(update={"host": "10.20.30.40"})
    assert "10.20.30.40" in edge.allowed_hosts(lab)
    assert "0.0.0.0" not in edge.allowed_hosts(
        settings.model_copy(update={"host": "0.0.0.0"}))
    with TestClient(create_app(settings), base_url="http://localhost:8000",
                    raise_server_exceptions=False) as c:
        for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", f"{name}:8000",
                     f"{name}.local", "192.168.1.23:8000", "[fe80::1]"):
            assert c.get(f"{V1}/health", headers={"host": host}).status_code == 200, host
        for host in ("testserver", "evil.example", "192.168.1.23.nip.io", ""):
            assert c.get(f"{V1}/health", headers={"host": host}).status_code == 400, host


def test_a_list_of_its_own_replaces_the_default(database_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url,
                        allowed_hosts=["Hub.Escuela.edu.co."], serial_scan=False)
    assert settings.allowed_hosts == ["hub.escuela.edu.co"]
    with TestClient(create_app(settings), base_url="https://hub.escuela.edu.co",
                    raise_server_exceptions=False) as c:
        assert c.get(f"{V1}/health").status_code == 200
        assert c.get(f"{V1}/health", headers={"host": "localhost"}).status_code == 400
        assert c.get(f"{V1}/health", headers={"host": "127.0.0.1"}).status_code == 200


@pytest.mark.parametrize("entry", ["http://hub.local", "hub.local:8000", "hub/x", " ",
                                   "[::1]"])
def test_an_allowed_host_with_a_scheme_port_or_path_is_refused(entry: str) -> None:
    with pytest.raises(ValueError, match="allowed_hosts"):
        Settings(allowed_hosts=[entry])


@pytest.mark.parametrize(("header", "name"), [
    ("localhost", "localhost"), ("LabPC.local:8000", "labpc.local"), ("[::1]:80", "::1"),
    ("::1", "::1"), ("hub.example.", "hub.example"), ("10.0.0.1:443", "10.0.0.1"),
])
def test_the_name_of_a_host_header(header: str, name: str) -> None:
    assert edge.host_name(header) == name


# -- 415 ------------------------------------------------------------------------------------


def test_a_text_plain_json_post_is_a_415_and_stores_nothing(
    client: TestClient, engine: Engine
) -> None:
    before = _rows(engine)
    r = client.post(f"{V1}/sites", content=SITE_JSON, headers={"content-type": "text/plain"})
    assert _problem(r, 415)["detail"] == (
        "the body is text/plain; POST /api/v1/sites takes application/json (send it with "
        "that Content-Type)")
    r = client.post(f"{V1}/readings", content=READINGS_JSON,
                    headers={"content-type": "text/plain;charset=UTF-8"})
    assert "POST /api/v1/readings takes application/json" in _problem(r, 415)["detail"]
    # fetch() with a Blob of no type sends no Content-Type: no preflight either
    r = client.post(f"{V1}/sites", content=SITE_JSON)
    assert _problem(r, 415)["detail"].startswith("the body has no Content-Type;")
    assert _rows(engine) == before  # no site, no reading, no dead letter
    for media in ("application/json", "application/json; charset=utf-8",
                  "application/merge-patch+json"):
        site = {**SITE, "code": f"VL-{len(media)}"}
        r = client.post(f"{V1}/sites", json=site, headers={"content-type": media})
        assert r.status_code == 201, (media, r.text)


@pytest.mark.parametrize("form", ["application/x-www-form-urlencoded", "multipart/form-data"])
def test_a_form_is_a_415_on_json_routes_and_uploads(
    client: TestClient, engine: Engine, form: str
) -> None:
    before = _rows(engine)
    content_type = form + ("; boundary=x" if form.startswith("multipart") else "")
    for path, body in [(f"{V1}/sites", b"code=VL&name=V&kind=network"),
                       (f"{V1}/readings", READINGS_JSON),
                       (f"{V1}/devices/d/data", b"t:1\n"),
                       (f"{V1}/import/sites", b"code,name,kind\nVL,V,network\n")]:
        r = client.post(path, content=body, headers={"content-type": content_type})
        assert _problem(r, 415)["detail"].startswith(f"the body is {form};"), path
    assert _rows(engine) == before


def test_every_json_route_refuses_text_plain_and_the_document_says_415(
    client: TestClient,
) -> None:
    spec = client.get("/openapi.json").json()
    swept = 0
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            content = op.get("requestBody", {}).get("content")
            if not content:
                assert "415" not in op["responses"], (method, path)
                continue
            assert op["responses"]["415"]["content"] == {
                PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}, (method, path)
            if "application/json" not in content or "text/plain" in content:
                continue
            numbers = {q["name"] for q in op.get("parameters", [])
                       if q["in"] == "path" and q["schema"].get("type") == "integer"}
            url = re.sub(r"\{([^}]+)\}", lambda m, n=frozenset(numbers): "1" if m[1] in n else "x",
                         path)
            r = client.request(method, url, content=b"{}",
                               headers={"content-type": "text/plain"})
            assert _problem(r, 415)["detail"].endswith(
                f"{method.upper()} {path} takes application/json (send it with that "
                "Content-Type)"), r.text
            swept += 1
    assert swept > 40


def test_uploads_take_the_media_types_their_document_lists(
    client: TestClient, engine: Engine
) -> None:
    """The check and the document agree: each type the document lists for an upload is
    read (no 415), and a body without Content-Type is application/octet-stream."""
    spec = client.get("/openapi.json").json()
    device_types = spec["paths"][f"{V1}/devices/{{device}}/data"]["post"]["requestBody"]
    assert set(device_types["content"]) == {
        "text/plain", "text/csv", "application/json", "application/x-ndjson",
        "application/octet-stream"}
    for media in device_types["content"]:
        r = client.post(f"{V1}/devices/d/data", params={"format": "plotter"},
                        content=b"t:1\n", headers={"content-type": media})
        assert r.status_code == 200, (media, r.text)
    assert client.post(f"{V1}/devices/d/data", content=b"t:1\n").status_code == 200
    import_types = spec["paths"][f"{V1}/import/{{kind}}"]["post"]["requestBody"]["content"]
    assert set(import_types) == {"text/csv", "text/plain", "application/octet-stream"}
    for i, media in enumerate([*import_types, None]):
        headers = {} if media is None else {"content-type": media}
        r = client.post(f"{V1}/import/sites", headers=headers,
                        content=f"code,name,kind\nN{i},Red {i},network\n".encode())
        assert r.status_code == 200 and r.json()["created"] == 1, (media, r.text)
    assert _rows(engine)["sites"] == 4


# -- headers --------------------------------------------------------------------------------

PAGE_POLICY = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
               "img-src 'self' data:; object-src 'none'; base-uri 'none'; "
               "frame-ancestors 'none'")


def _common_headers(r: httpx2.Response) -> None:
    assert r.headers["x-content-type-options"] == "nosniff", r.request.url
    assert r.headers["referrer-policy"] == "same-origin"
    assert r.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


def test_every_answer_carries_the_security_headers(client: TestClient) -> None:
    answers = [client.get(f"{V1}/health"), client.get(f"{V1}/sites/NOPE"),
               client.get(f"{V1}/export/sites.csv"), client.get("/openapi.json"),
               client.get(f"{V1}/health", headers={"host": "evil.example"}),
               client.post(f"{V1}/sites", content=b"x", headers={"content-type": "text/plain"}),
               client.get("/static-labhub/swagger-init.js")]
    assert [r.status_code for r in answers] == [200, 404, 200, 200, 400, 415, 200]
    for r in answers:
        _common_headers(r)
        assert r.headers["content-security-policy"] == (
            "default-src 'none'; frame-ancestors 'none'"), r.request.url
    page = client.get("/docs")
    _common_headers(page)
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == PAGE_POLICY


def _inline(html: str) -> list[str]:
    """Inline scripts and styles of a page, and any ``on...=`` or ``style=`` attribute."""
    found = [m.group(0) for m in re.finditer(r"<script(?![^>]*\bsrc=)[^>]*>", html)]
    found += re.findall(r"<style\b", html)
    found += re.findall(r"\s(?:on\w+|style)\s*=", html)
    return found


def test_the_docs_pages_run_no_inline_script(client: TestClient) -> None:
    docs = client.get("/docs")
    policy = docs.headers["content-security-policy"]
    assert "unsafe-inline" not in policy and "'unsafe-eval'" not in policy
    assert _inline(docs.text) == []
    scripts = re.findall(r'<script src="([^"]+)"', docs.text)
    assert scripts == ["/static-offline-docs/swagger-ui-bundle.js",
                       "/static-labhub/swagger-init.js"]
    init = client.get(scripts[1])
    assert init.status_code == 200 and "SwaggerUIBundle(" in init.text
    assert 'data-openapi-url="/openapi.json"' in docs.text
    redoc = client.get("/redoc")
    policy = redoc.headers["content-security-policy"]
    assert "unsafe-inline" not in policy and "'unsafe-eval'" not in policy
    assert "script-src 'self' 'wasm-unsafe-eval';" in policy and "frame-ancestors 'none'" in policy
    assert _inline(redoc.text) == []
    for url in re.findall(r'(?:src|href)="(/[^"]+)"', docs.text + redoc.text):
        assert client.get(url).status_code == 200, url


# -- TLS and a reverse proxy ----------------------------------------------------------------


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1, as security.md tells a lab to make it."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp / "hub.crt", tmp / "hub.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True)
    return cert, key


class Served:
    """``labhub serve`` in a process of its own, on the SQLite file it makes itself."""

    def __init__(self, tmp: Path, *args: str,
                 env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.log = tmp / f"serve-{self.port}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [LABHUB, "serve", "--port", str(self.port), *args],
                env={"PATH": os.environ.get("PATH", ""), "LABHUB_CONFIG": os.devnull,
                     "LABHUB_DATA_DIR": str(tmp / "data"), "LABHUB_SERIAL_SCAN": "false",
                     "LABHUB_LOG_LEVEL": "warning", **(env or {})},
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait_ready(self, client: httpx2.Client, base: str) -> None:
        def up() -> bool:
            assert self.process.poll() is None, self.log.read_text()
            try:
                return client.get(f"{base}/api/v1/health").status_code == 200
            except httpx2.TransportError:
                return False
        wait_for(up, timeout=30, what="labhub serve to answer", state=self.log.read_text)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def test_labhub_serve_answers_https_with_its_own_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    served = Served(tmp_path, "--certfile", str(cert), "--keyfile", str(key))
    trust = ssl.create_default_context(cafile=str(cert))
    try:
        with httpx2.Client(verify=trust, timeout=10) as https:
            base = f"https://localhost:{served.port}"
            served.wait_ready(https, base)
            r = https.get(f"{base}/api/v1/health")
            assert r.status_code == 200 and r.json()["database"]
            _common_headers(r)
            # the scheme the app sees is https: a redirect it makes says so
            r = https.get(f"{base}/api/v1/health/", follow_redirects=False)
            assert r.status_code == 307
            assert r.headers["location"] == f"{base}/api/v1/health"
        with httpx2.Client(timeout=10) as plain, pytest.raises(httpx2.TransportError):
            plain.get(f"http://localhost:{served.port}/api/v1/health")
    finally:
        served.stop()
    assert "https://" in served.log.read_text()


def test_a_reverse_proxy_is_believed_only_when_listed(tmp_path: Path) -> None:
    """Behind a proxy that ends TLS, ``X-Forwarded-Proto: https`` makes the request https
    when the proxy's address is in ``forwarded_allow_ips``; by default no one is believed."""
    proxied = {"x-forwarded-proto": "https", "x-forwarded-for": "203.0.113.7"}
    for allow, scheme in ((None, "http"), ('["127.0.0.1"]', "https")):
        env = {} if allow is None else {"LABHUB_FORWARDED_ALLOW_IPS": allow}
        served = Served(tmp_path, env=env)
        base = f"http://127.0.0.1:{served.port}"
        try:
            with httpx2.Client(timeout=10) as client:
                served.wait_ready(client, base)
                r = client.get(f"{base}/api/v1/health/", headers=proxied,
                               follow_redirects=False)
                assert r.status_code == 307
                assert r.headers["location"] == (
                    f"{scheme}://127.0.0.1:{served.port}/api/v1/health"), allow
        finally:
            served.stop()


def test_half_a_certificate_pair_is_a_clear_exit(tmp_path: Path) -> None:
    cert, _ = _self_signed(tmp_path)
    env = {"PATH": os.environ.get("PATH", ""), "LABHUB_CONFIG": os.devnull,
           "LABHUB_DATA_DIR": str(tmp_path / "data"), "LABHUB_SERIAL_SCAN": "false"}
    done = subprocess.run([LABHUB, "serve", "--certfile", str(cert)], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "tls_certfile and tls_keyfile go together" in done.stderr
    done = subprocess.run([LABHUB, "serve", "--certfile", str(cert), "--keyfile",
                           str(tmp_path / "nope.key")], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "no such file" in done.stderr
    assert "Traceback" not in done.stderr
