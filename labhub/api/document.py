"""The API's OpenAPI document, and the rules that keep the API to it.

The document is FastAPI's, made true where FastAPI cannot know: every error is
``application/problem+json`` with the one ``Problem`` schema (422 on every operation, 413
on every one with a body, and what each route declares with
:func:`labhub.problems.problem_responses`); bodies a route reads itself are described by
models registered with :func:`json_body`; the largest ``limit`` is the hub's own
``page_limit_max`` where that is smaller than a route's cap. And a query parameter that
the document does not declare for an operation is refused with a 422 naming it
(:func:`refuse_unknown_query`, a dependency of every route), never silently ignored.
tests/test_openapi_conformance.py fuzzes the app against this document.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel

from labhub.access.gate import gates_of
from labhub.access.permissions import Permission
from labhub.problems import Problem, ProblemOut, _flat_routes, problem_responses

_REF_TEMPLATE = "#/components/schemas/{model}"
# Bodies routes read themselves (to keep what they cannot store), by schema name.
_BODY_MODELS: dict[str, type[BaseModel]] = {}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """An ``openapi_extra`` for a route that reads a JSON body of ``model`` itself."""
    _BODY_MODELS[model.__name__] = model
    return {"requestBody": {
        "required": True,
        "content": {"application/json": {
            "schema": {"$ref": _REF_TEMPLATE.format(model=model.__name__)}}},
    }}


def file_response(
    media_type: str, description: str, *, schema: dict[str, Any] | None = None,
    headers: dict[str, Any] | None = None,
) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` entry of a route whose 200 is a file (CSV, PDF, SVG, a JSON
    document streamed), not a model FastAPI knows."""
    entry: dict[str, Any] = {
        "description": description,
        "content": {media_type: {"schema": schema or {"type": "string"}}},
    }
    if headers:
        entry["headers"] = headers
    return {200: entry}


_WRITES = frozenset({"post", "put", "patch", "delete"})


def _declare_problems(doc: dict[str, Any]) -> None:
    """The problem+json answers every operation of a kind can give, as the document's:

    * every operation: 422 (a parameter out of its rules, one it does not take, or a value
      the domain refuses);
    * with a body: 400 (not JSON, or not UTF-8), 413 (larger than the hub takes) and 415
      (a media type the route does not read: :func:`labhub.api.edge.refuse_media_type`);
    * with a parameter in its path: 404 (nothing has that key);
    * a write to the inventory or to a device: 404 (a key in its body names nothing) and
      409 (taken, a stale version, a state that does not allow it).

    A route declares what else it gives with ``problem_responses`` (a filter that names an
    unknown site is a 404 on a list). FastAPI's own 422 (``HTTPValidationError`` as
    ``application/json``) is not what the hub sends, and goes.
    """
    for operations in doc.get("paths", {}).values():
        for method, operation in operations.items():
            statuses = {422}
            if "requestBody" in operation:
                statuses |= {400, 413, 415}
            if any(p.get("in") == "path" for p in operation.get("parameters", [])):
                statuses.add(404)
            tags = operation.get("tags", [])
            if method in _WRITES and any(t.startswith(("inventory", "devices")) for t in tags):
                statuses |= {404, 409}
            responses = operation.setdefault("responses", {})
            for status, entry in problem_responses(*sorted(statuses)).items():
                responses.setdefault(str(status), entry)
            validation = responses.get("422", {}).get("content", {})
            if "application/json" in validation:
                responses["422"] = problem_responses(422)[422]
    schemas = doc.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)


def _declare_gates(doc: dict[str, Any], app: FastAPI) -> None:
    """Each operation's permission (``x-permission``, from its gate), and the 401 and 403
    every operation that is not public can answer."""
    paths = doc.get("paths", {})
    for route in _flat_routes(app.router.routes):
        gates = gates_of(route)
        if not gates or not isinstance(route, APIRoute):
            continue
        for method in route.methods or ():
            operation = paths.get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            operation["x-permission"] = gates[0].permission.value
            if any(g.permission is not Permission.PUBLIC for g in gates):
                responses = operation.setdefault("responses", {})
                for status, entry in problem_responses(401, 403).items():
                    responses.setdefault(str(status), entry)


def _drop_default_json(doc: dict[str, Any]) -> None:
    """A route that returns a file says so with :func:`file_response`; FastAPI still adds
    an ``application/json`` of any shape to its 200, which it never sends."""
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            content = operation.get("responses", {}).get("200", {}).get("content", {})
            if len(content) > 1 and content.get("application/json") == {"schema": {}}:
                del content["application/json"]


def _components(doc: dict[str, Any]) -> dict[str, Any]:
    schemas: dict[str, Any] = doc.setdefault("components", {}).setdefault("schemas", {})
    named: dict[str, type[BaseModel]] = {"Problem": ProblemOut, **_BODY_MODELS}
    for name, model in named.items():
        schema = model.model_json_schema(ref_template=_REF_TEMPLATE)
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
    return schemas


def _keys_by_names(node: Any) -> None:
    """Pydantic states a map's key rule (``dict[Key, int]``) as ``patternProperties``,
    which in JSON Schema lets a key that misses the pattern through with any value; the
    hub refuses such a key, so say it as ``propertyNames`` and ``additionalProperties``."""
    if isinstance(node, dict):
        patterned = node.get("patternProperties")
        if (isinstance(patterned, dict) and len(patterned) == 1
                and "additionalProperties" not in node):
            ((pattern, values),) = patterned.items()
            del node["patternProperties"]
            node["propertyNames"] = {**node.get("propertyNames", {}), "pattern": pattern}
            node["additionalProperties"] = values
        for value in node.values():
            _keys_by_names(value)
    elif isinstance(node, list):
        for value in node:
            _keys_by_names(value)


def _cap_limits(doc: dict[str, Any], page_limit_max: int) -> None:
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "query" and parameter.get("name") == "limit":
                    schema = parameter.setdefault("schema", {})
                    schema["maximum"] = min(schema.get("maximum", page_limit_max),
                                            page_limit_max)


def _build(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        doc = get_openapi(
            title=app.title, version=app.version, openapi_version=app.openapi_version,
            summary=app.summary, description=app.description, routes=app.routes,
        )
        _components(doc)
        _declare_problems(doc)
        _declare_gates(doc, app)
        _drop_default_json(doc)
        _cap_limits(doc, app.state.settings.page_limit_max)
        _keys_by_names(doc)
        app.openapi_schema = doc
    return app.openapi_schema


def install(app: FastAPI) -> None:
    """Make ``app``'s document true, and answer as it says."""
    app.state.declared_query = {}
    app.state.body_media_types = {}
    app.openapi = lambda: _build(app)  # type: ignore[method-assign]


def _declared_query(app: FastAPI, route: APIRoute, method: str) -> frozenset[str] | None:
    """The query parameters the document declares for ``route`` and ``method``; None for a
    route the document does not show (the docs pages)."""
    cache: dict[tuple[str, str], frozenset[str] | None] = app.state.declared_query
    key = (route.path_format, method)
    if key not in cache:
        operation = _build(app).get("paths", {}).get(route.path_format, {}).get(method)
        cache[key] = None if operation is None else frozenset(
            p["name"] for p in operation.get("parameters", []) if p.get("in") == "query")
    return cache[key]


def body_media_types(app: FastAPI, route: APIRoute, method: str) -> tuple[str, ...] | None:
    """The media types the document says ``route`` takes as a body for ``method`` (its
    ``requestBody``'s ``content``); None for an operation without a body, or one the
    document does not show (the docs pages)."""
    cache: dict[tuple[str, str], tuple[str, ...] | None] = app.state.body_media_types
    key = (route.path_format, method)
    if key not in cache:
        operation = _build(app).get("paths", {}).get(route.path_format, {}).get(method)
        content = (operation or {}).get("requestBody", {}).get("content")
        cache[key] = tuple(content) if content else None
    return cache[key]


def refuse_unknown_query(request: Request) -> None:
    """Refuse (422) a query parameter the operation does not declare: a filter the route
    does not have must not be ignored and answer with everything."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.query_params:
        return
    method = "get" if request.method == "HEAD" else request.method.lower()
    declared = _declared_query(request.app, route, method)
    if declared is None:
        return
    unknown = sorted({name for name in request.query_params if name not in declared})
    if not unknown:
        return
    takes = ", ".join(sorted(declared)) or "none"
    errors = [{"where": f"query.{name}",
               "message": f"{name!r} is not a query parameter of this operation"}
              for name in unknown]
    raise Problem(422, "Unknown query parameter",
                  f"{request.method} {route.path_format} does not take "
                  f"{', '.join(repr(n) for n in unknown)}; its query parameters: {takes}",
                  errors=errors)
