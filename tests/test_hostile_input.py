"""SPEC 13 against a real `ains serve` on both databases, with cases generated from its own /openapi.json:
for every operation, every string field of the body (at any depth the schema describes), every free-form
object, every numeric field, the whole body, every path and query parameter, and every `cursor`, send what
AINS never accepts (NUL, lone surrogates, NaN, ±Infinity, 1e400, forged cursors). Every answer must be 4xx
(NUL and non-finite numbers exactly 422, forged cursors 400), and nothing of it may be stored. A new route
is covered without editing this file."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from ains.identity import Identity
from tests.conftest import _clean, unavailable
from tests.helpers import ADMIN, ServerProcess, bearer

NUL = "a\x00b"
SURROGATE = "a\ud800b"
NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]
FORGED_CURSORS = ["garbage!", "eyJ4IjoxfQ", "WzFd.AAAAAAAAAAAAAAAAAAAAAA", "WyJ4Il0", "x" * 600, "Ww.", "."]
MARK = "__hostile_number__"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request, tmp_path_factory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("hostile")
    env = {"AINS_DATA_DIR": str(data), "AINS_WEBHOOK_ALLOW_PRIVATE": "true", "AINS_LOG_LEVEL": "WARNING"}
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        if url is None:
            unavailable("PostgreSQL unavailable")
        import asyncio

        asyncio.run(_clean(url))
        env["AINS_DATABASE_URL"] = url
    else:
        env["AINS_DATABASE_URL"] = f"sqlite+aiosqlite:///{data / 'ains.db'}"
    process = ServerProcess(env)
    yield process
    process.stop()


class World:
    """The principals and rows the attacks aim at, so that they pass authorisation and reach validation."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        created = http.post("/ains/api-keys", json={"client_id": "client_1", "name": "hostile"}, headers=ADMIN)
        assert created.status_code == 201, created.text
        self.key_id = created.json()["key_id"]
        self.client = bearer(created.json()["api_key"])
        self.identity = Identity.generate()
        body = self.identity.registration("agent_1") | {"capabilities": ["data:v1"], "max_concurrency": 5}
        registered = http.post("/ains/agents", json=body)
        assert registered.status_code == 201, registered.text
        self.agent = bearer(registered.json()["api_key"])
        task = {"task_type": "a", "capability_required": "data:v1", "input_data": {"n": 1}}
        self.task_id = http.post("/ains/tasks", json=task, headers=self.client).json()["task_id"]
        http.post("/ains/tasks", json=task, headers=self.client)
        claimed = http.post("/ains/agents/agent_1/tasks/claim", json={"start": True}, headers=self.agent)
        assert claimed.json()["tasks"], claimed.text
        self.active_id = claimed.json()["tasks"][0]["task_id"]
        hook = {"url": "http://127.0.0.1:9/hook", "events": ["task.completed"]}
        made = http.post("/ains/clients/client_1/webhooks", json=hook, headers=self.client)
        self.webhook_id = made.json().get("webhook_id", "none") if made.status_code == 201 else "none"

    def path_value(self, name: str) -> str:
        return {
            "task_id": self.active_id,
            "agent_id": "agent_1",
            "client_id": "client_1",
            "key_id": self.key_id,
            "webhook_id": self.webhook_id,
        }.get(name, "1")

    def principal(self, path: str) -> dict[str, str]:
        if "{agent_id}" in path or re.search(r"/(start|complete|fail|complete-batch|fail-batch)$", path):
            return self.agent
        if "{client_id}" in path or "/webhooks/" in path:
            return self.client
        return ADMIN

    def snapshot(self) -> dict[str, Any]:
        get = lambda path, headers=ADMIN: self.http.get(path, headers=headers).json()  # noqa: E731
        tasks = get("/ains/tasks?limit=500")["tasks"]
        return {
            "tasks": sorted((t["task_id"], t["status"], t["priority"], json.dumps(t["metadata"])) for t in tasks),
            "keys": len(get("/ains/api-keys?include_revoked=true&limit=500")),
            "agents": [(a["agent_id"], a["display_name"], a["status"]) for a in get("/ains/agents")["agents"]],
            "webhooks": len(get("/ains/clients/client_1/webhooks", self.client)),
            "schedules": sorted(
                (s["schedule_id"], s["cron"], s["timezone"], s["active"], json.dumps(s["task"]))
                for s in get("/ains/schedules?limit=500")["schedules"]
            ),
            "workflows": sorted((w["workflow_id"], w["status"]) for w in get("/ains/workflows?limit=500")["workflows"]),
            "registration_tokens": len(get("/ains/registration-tokens")["registration_tokens"]),
        }


def resolve(document: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        return resolve(document, options[0]) if options else schema
    return schema


def example(document: dict, schema: dict) -> Any:
    """A plausible valid value for `schema` (the attacks then break one part of it)."""
    schema = resolve(document, schema)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {name: example(document, props[name]) for name in schema.get("required", []) if name in props}
    if kind == "array":
        return [example(document, schema.get("items", {}))] if schema.get("minItems") else []
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return schema.get("minimum", 0.5)
    if kind == "boolean":
        return False
    if kind == "string":
        if schema.get("format") == "date-time":
            return datetime.now(UTC).isoformat()
        pattern = schema.get("pattern", "")
        if ":" in pattern:
            return "data:v1"
        return "agent_1" if "{3,64}" in pattern else "x" * max(1, schema.get("minLength", 1))
    return {}


def leaves(document: dict, schema: dict, path: tuple = (), depth: int = 0) -> Iterator[tuple[tuple, str]]:
    """(path, kind) of every string, number and free-form object field the schema describes."""
    schema = resolve(document, schema)
    if depth > 4:
        return
    kind = schema.get("type")
    if "properties" in schema:
        for name, sub in schema["properties"].items():
            yield from leaves(document, sub, (*path, name), depth + 1)
    elif kind == "array":
        yield from leaves(document, schema.get("items", {}), (*path, 0), depth + 1)
    elif kind == "object" or not kind and not schema.get("enum"):
        yield path, "object"
    elif kind in ("integer", "number"):
        yield path, "number"
    elif kind == "string":
        yield path, "string"


def put(body: Any, path: tuple, value: Any) -> Any:
    """A copy of `body` with `value` at `path` (creating objects and one-item lists on the way)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(head, int):
        items = list(body) if isinstance(body, list) and body else [{}]
        items[0] = put(items[0], rest, value)
        return items
    copy = dict(body) if isinstance(body, dict) else {}
    copy[head] = put(copy.get(head, {}), rest, value)
    return copy


def dump(body: Any) -> bytes:
    """JSON with lone surrogates escaped (\\ud800) and the number placeholders written bare."""
    text = json.dumps(body, ensure_ascii=True)
    for number in NUMBERS:
        text = text.replace(f'"{MARK}{number}"', number)
    return text.encode()


def cases(document: dict, world: World) -> Iterator[tuple[str, str, str, bytes | None, dict, str]]:
    """(method, url, label, body, headers, expectation) for every attack on every operation."""
    for template, operations in document["paths"].items():
        for method, operation in operations.items():
            params = operation.get("parameters", [])
            values = {p["name"]: world.path_value(p["name"]) for p in params if p["in"] == "path"}
            headers = world.principal(template) | {"content-type": "application/json"}

            def url(overrides: dict[str, str] | None = None, query: str = "", values=values, template=template):
                merged = values | (overrides or {})
                path = template
                for name, value in merged.items():
                    path = path.replace("{" + name + "}", value)
                return path + (f"?{query}" if query else "")

            schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            base = example(document, schema) if schema else None
            label = f"{method.upper()} {template}"
            if schema:
                for path, kind in leaves(document, schema):
                    where = ".".join(map(str, path))
                    if kind == "string":
                        for text in (NUL, SURROGATE):
                            yield (
                                method,
                                url(),
                                f"{label} body.{where}={text!r}",
                                dump(put(base, path, text)),
                                headers,
                                "422",
                            )
                    elif kind == "object":
                        for bad in ({"k": NUL}, {NUL: 1}, {"deep": [{"k": SURROGATE}]}, {"n": f"{MARK}NaN"}):
                            yield (
                                method,
                                url(),
                                f"{label} body.{where}={bad!r}",
                                dump(put(base, path, bad)),
                                headers,
                                "422",
                            )
                    if kind in ("number", "object", "string"):
                        for number in NUMBERS:
                            body = dump(put(base, path, f"{MARK}{number}"))
                            yield method, url(), f"{label} body.{where}={number}", body, headers, "422"
            for number in NUMBERS:
                yield method, url(), f"{label} whole body {number}", number.encode(), headers, "422"
            yield method, url(), f"{label} whole body NUL", b'"\\u0000"', headers, "422"
            for param in params:
                name = param["name"]
                if param["in"] == "path":
                    yield method, url({name: quote(NUL)}), f"{label} path {name} NUL", None, headers, "422"
                    # A URL cannot carry a lone surrogate: its UTF-8 bytes arrive as U+FFFD. Never a 5xx.
                    yield method, url({name: "%ED%A0%80"}), f"{label} path {name} surrogate", None, headers, "4xx"
                elif param["in"] == "query":
                    yield method, url(query=f"{name}=%00"), f"{label} query {name} NUL", None, headers, "422"
                    yield method, url(query=f"{name}=%ED%A0%80"), f"{label} query {name} bytes", None, headers, "<500"
                    if resolve(document, param.get("schema", {})).get("type") in ("integer", "number"):
                        for number in ("nan", "inf", "-inf", "1e400", "NaN", "Infinity"):
                            yield (
                                method,
                                url(query=f"{name}={number}"),
                                f"{label} query {name}={number}",
                                None,
                                headers,
                                "422",
                            )
                    if name == "cursor":
                        for forged in FORGED_CURSORS:
                            yield (
                                method,
                                url(query=f"cursor={quote(forged)}"),
                                f"{label} cursor {forged[:20]}",
                                None,
                                headers,
                                "400",
                            )


def refused_items(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and bool(body.get("failed")) and not body.get("submitted")


def test_hostile_input_from_the_openapi_document(server):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        document = http.get("/openapi.json").json()
        world = World(http)
        before = world.snapshot()
        failures: list[str] = []
        count = 0
        for method, url, label, body, headers, expect in cases(document, world):
            count += 1
            try:
                response = http.request(method.upper(), url, content=body, headers=headers)
            except httpx.TransportError as exc:
                failures.append(f"{label}: no answer ({type(exc).__name__}: {exc})")
                continue
            status = response.status_code
            if status == 200 and expect == "422" and refused_items(response):
                continue  # a batch answers per item: the bad item failed alone (and, here, it was the only one)
            ok = {
                "422": status == 422,
                "400": status == 400 or (status == 404 and "{webhook_id}" in label and world.webhook_id == "none"),
                "4xx": 400 <= status < 500,
                "<500": status < 500,
            }[expect]
            if not ok or status >= 500:
                failures.append(f"{label}: {status} {response.text[:200]}")
            elif status >= 400 and "detail" not in response.text:
                failures.append(f"{label}: {status} without a JSON detail: {response.text[:200]}")
        assert count > 500
        assert not failures, f"{len(failures)} of {count} cases:\n" + "\n".join(failures[:40])
        assert world.snapshot() == before
        # The server logged no error for any of it.
        errors = [line for line in server.log_lines() if line.get("level") in ("error", "critical")]
        assert not errors, errors[:5]
