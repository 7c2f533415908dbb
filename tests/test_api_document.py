"""The API keeps to its OpenAPI document: bounded pages, unknown query parameters refused,
405 with ``Allow``, a resolvable readings body, bodies the schema requires."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from signed_in import as_admin
from starlette.convertors import IntegerConvertor
from starlette.testclient import TestClient

from labhub.app import create_app
from labhub.settings import Settings

PROBLEM = "application/problem+json"
HUGE = "9223372036854775808"  # 2**63: past the 64-bit integers both databases take
LISTS = ["/api/v1/assets", "/api/v1/loans", "/api/v1/transfers", "/api/v1/stock",
         "/api/v1/reorder", "/api/v1/locations", "/api/v1/rejects",
         "/api/v1/readings?device=d&channel=c", "/api/v1/runs", "/api/v1/runs/r/readings"]


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with as_admin(TestClient(create_app(settings))) as client:
        yield client


def _api_routes(client: TestClient) -> list[APIRoute]:
    routes = [c.original_route for c in iter_route_contexts(client.app.routes)]
    return [r for r in routes if isinstance(r, APIRoute) and r.include_in_schema]


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("param", ["offset", "limit"])
def test_a_huge_offset_or_limit_is_a_422_the_document_announces(
    client: TestClient, path: str, param: str
) -> None:
    path, _, query = path.partition("?")
    params = dict(pair.split("=") for pair in query.split("&") if pair)
    r = client.get(path, params={**params, param: HUGE})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    assert param in r.json()["detail"]
    operation = client.get("/openapi.json").json()["paths"][path.replace(
        "/runs/r/", "/runs/{run_id}/")]["get"]
    schema = {p["name"]: p["schema"] for p in operation["parameters"]}[param]
    assert schema["maximum"] < 2**63 and schema["minimum"] in (0, 1)


def test_limit_zero_is_refused_by_the_schema_too(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    limit = {p["name"]: p for p in doc["paths"]["/api/v1/assets"]["get"]["parameters"]}["limit"]
    assert limit["schema"]["minimum"] == 1
    assert client.get("/api/v1/assets?limit=0").status_code == 422


def test_every_route_refuses_a_query_parameter_it_does_not_take(client: TestClient) -> None:
    routes = _api_routes(client)
    assert len(routes) > 50
    for route in routes:
        path = route.path_format.format(**{  # a number where the route takes only one
            name: "1" if isinstance(convertor, IntegerConvertor) else "x"
            for name, convertor in route.param_convertors.items()})
        for method in sorted(route.methods - {"HEAD"}):
            # A name no operation takes ("rural" is a filter of the network's lists).
            r = client.request(method, path, params={"colour": "red"})
            assert r.status_code == 422, (method, path, r.status_code, r.text)
            assert r.headers["content-type"] == PROBLEM
            assert r.json()["errors"] == [
                {"where": "query.colour",
                 "message": "'colour' is not a query parameter of this operation"}]


def test_filters_that_exist_still_work_and_others_are_named(client: TestClient) -> None:
    assert client.get("/api/v1/sites?kind=network").status_code == 200
    r = client.get("/api/v1/sites?kind=network&rollout_status=active")
    assert r.status_code == 422 and "'rollout_status'" in r.json()["detail"]


def test_a_wrong_method_is_a_405_that_lists_every_method_of_the_path(
    client: TestClient,
) -> None:
    r = client.request("DELETE", "/api/v1/sites")
    assert r.status_code == 405
    assert set(r.headers["allow"].split(", ")) >= {"GET", "POST"}
    assert r.headers["content-type"] == PROBLEM
    # /sites/{code:path} also matches this path; the path means /sites/{code}/rollout.
    assert client.request("PUT", "/api/v1/sites/X/rollout").headers["allow"] == "POST"


def test_the_readings_body_schema_resolves_in_the_document(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    body = doc["paths"]["/api/v1/readings"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"]
    name = ref.removeprefix("#/components/schemas/")
    schema = doc["components"]["schemas"][name]
    assert "$defs" not in schema
    item_ref = schema["properties"]["readings"]["items"]["$ref"]
    assert item_ref.removeprefix("#/components/schemas/") in doc["components"]["schemas"]


def test_errors_are_documented_as_problems(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert "Problem" in doc["components"]["schemas"]
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for operations in doc["paths"].values():
        for operation in operations.values():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert list(response["content"]) == [PROBLEM], (operation["summary"], status)
    site = doc["paths"]["/api/v1/sites/{code}"]["get"]["responses"]
    assert {"404", "422"} <= set(site)


def test_device_data_without_a_body_is_refused(client: TestClient) -> None:
    r = client.post("/api/v1/devices/d/data", content=b"")
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    assert client.get("/api/v1/devices").json() == []


def test_an_empty_dead_letter_lists_without_a_500(client: TestClient) -> None:
    assert client.post("/api/v1/readings", content=b"").status_code == 400
    [reject] = client.get("/api/v1/rejects", params={"with_payload": "true"}).json()["items"]
    assert reject["payload"] == "" and reject["payload_bytes"] == 0


def _strings_without_a_rule(schema: object, where: str, doc: dict[str, object]) -> list[str]:
    """Places in ``schema`` where a string may hold anything: no pattern, enum, const or
    format (a request's text must say which characters it refuses)."""
    if not isinstance(schema, dict):
        return []
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        components = doc["components"]
        assert isinstance(components, dict)
        return _strings_without_a_rule(components["schemas"][name], f"{where}->{name}", doc)
    found = []
    if schema.get("type") == "string" and not {"pattern", "enum", "const", "format"} & set(
            schema):
        found.append(where)
    for key in ("anyOf", "oneOf", "allOf"):
        for i, sub in enumerate(schema.get(key, [])):
            found += _strings_without_a_rule(sub, f"{where}.{key}{i}", doc)
    for name, sub in schema.get("properties", {}).items():
        found += _strings_without_a_rule(sub, f"{where}.{name}", doc)
    for key in ("items", "additionalProperties", "propertyNames"):
        found += _strings_without_a_rule(schema.get(key), f"{where}.{key}", doc)
    return found


def test_every_string_a_request_sends_has_a_rule_in_the_document(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    loose = []
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            at = f"{method.upper()} {path}"
            for p in operation.get("parameters", []):
                loose += _strings_without_a_rule(p["schema"], f"{at} {p['in']}.{p['name']}", doc)
            for media, content in operation.get("requestBody", {}).get("content", {}).items():
                if media == "application/json":
                    loose += _strings_without_a_rule(content["schema"], f"{at} body", doc)
    assert loose == []


def test_a_body_field_the_route_does_not_take_is_refused(client: TestClient) -> None:
    r = client.post("/api/v1/sites", json={"code": "N", "name": "Red", "kind": "network",
                                           "rurl": True})
    assert r.status_code == 422 and "body.rurl: is not a field" in r.json()["detail"]
    assert client.get("/api/v1/sites").json() == []
    schema = client.get("/openapi.json").json()["components"]["schemas"]["SiteIn"]
    assert schema["additionalProperties"] is False


def test_a_map_of_keys_says_its_keys_rule_as_property_names(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]["KitContentsIn"]
    parts = schema["properties"]["parts"]
    assert "patternProperties" not in parts
    assert parts["propertyNames"]["pattern"].startswith("^[A-Za-z0-9]")
    assert parts["additionalProperties"]["type"] == "integer"


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("PATCH", "/api/v1/sites/VL-01/retire", "POST"),
    ("DELETE", "/api/v1/assets/by-tag/VC-1/status", "POST"),
    ("GET", "/api/v1/models/ARD/retire", "POST"),
])
def test_a_method_the_paths_own_template_lacks_is_a_405_not_another_routes_answer(
    client: TestClient, method: str, path: str, allow: str
) -> None:
    r = client.request(method, path, json={"name": "X"})
    assert r.status_code == 405, r.text
    assert r.headers["allow"] == allow


def test_an_if_match_and_an_expected_version_that_differ_are_a_409(client: TestClient) -> None:
    assert client.post("/api/v1/sites", json={"code": "N", "name": "Red",
                                              "kind": "network"}).status_code == 201
    r = client.patch("/api/v1/sites/N", json={"name": "Red 2", "expected_version": 1},
                     headers={"If-Match": '"2"'})
    assert r.status_code == 409 and "at most one of them" in r.json()["detail"]
    assert client.get("/api/v1/sites/N").json()["name"] == "Red"
