"""Every route declares the permission it needs and the site it acts on (a ``Gate``), and
the OpenAPI document says which: its ``x-permission``, and the 401 and 403 of every
route that is not public."""

from __future__ import annotations

from pathlib import Path

from fastapi.routing import APIRoute

from labhub.access.gate import gates_of
from labhub.access.permissions import Permission
from labhub.app import create_app
from labhub.problems import _flat_routes
from labhub.settings import Settings

# The framework's own pages: the document and its viewers, not LabHub's API.
FRAMEWORK_ROUTES = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


def _app(tmp_path: Path):  # type: ignore[no-untyped-def]
    return create_app(Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/x.db"))


def _routes(tmp_path: Path) -> list[tuple[str, str, APIRoute]]:
    out = []
    for route in _flat_routes(_app(tmp_path).router.routes):
        path = getattr(route, "path", "")
        if path in FRAMEWORK_ROUTES or path.startswith("/static"):
            continue
        for method in sorted(getattr(route, "methods", None) or {"?"}):
            out.append((method, path, route))
    return out


def test_every_route_declares_a_gate(tmp_path: Path) -> None:
    routes = _routes(tmp_path)
    assert len(routes) >= 99
    ungated = [f"{m} {p}" for m, p, r in routes if not gates_of(r)]
    assert not ungated, "routes without needs(...): " + ", ".join(ungated)


def test_only_health_sign_in_its_page_and_joining_a_class_are_public(tmp_path: Path) -> None:
    """... and a hub's joining of the network, whose enrolment token is in its body."""
    public = sorted(f"{m} {p}" for m, p, r in _routes(tmp_path)
                    if any(g.permission is Permission.PUBLIC for g in gates_of(r)))
    assert public == ["GET /api/v1/health", "GET /signin", "POST /api/v1/auth/sign-in",
                      "POST /api/v1/classes/join", "POST /api/v1/network/join",
                      "POST /signin"]


def test_each_operation_that_is_not_public_documents_401_and_403(tmp_path: Path) -> None:
    app = _app(tmp_path)
    doc = app.openapi()
    missing = []
    operations = 0
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            operations += 1
            if op.get("x-permission") is None:
                missing.append(f"{method.upper()} {path}: no x-permission")
            elif op["x-permission"] == "public":
                # Only a failed sign-in (or an unknown enrolment token) is a 401 among the
                # public operations.
                assert ("401" in op["responses"]) == (
                    path in ("/api/v1/auth/sign-in", "/api/v1/network/join")), path
            elif not {"401", "403"} <= set(op["responses"]):
                missing.append(f"{method.upper()} {path}: no 401 or 403")
            if "401" in op["responses"]:
                assert "WWW-Authenticate" in op["responses"]["401"]["headers"]
    assert operations >= 99
    assert not missing, "; ".join(missing)
