"""SPEC 18: scopes. Generated from the app's route table: every route declares its access exactly once, the
OpenAPI document shows it, and a client key holding one scope is let through exactly the routes of that
scope (a 403 naming the scope everywhere else it is needed), whatever the route's own rules do next."""

from __future__ import annotations

import re

import pytest

from ains.auth.dependencies import ACCESS_LEVELS, ADMIN, AGENT, ANY_KEY, PUBLIC, api_routes, route_access
from ains.core.principal import CLIENT_SCOPES
from tests.helpers import ADMIN as ADMIN_HEADERS
from tests.helpers import create_client, register_agent

PARAMS = {"agent_id": "agent_zz", "client_id": "client_zz", "task_id": "task_nope", "key_id": "key_nope"}


def _routes(app):
    routes = [route for route in api_routes(app) if route.include_in_schema]
    assert len(routes) > 30, "the route table was not read"
    return routes


def _url(path: str) -> str:
    return re.sub(r"{(\w+)}", lambda m: PARAMS.get(m.group(1), f"{m.group(1)}_nope"), path)


async def _call(client, method: str, path: str, headers: dict[str, str] | None):
    body = {} if method in {"POST", "PATCH", "PUT"} else None
    return await client.request(method, _url(path), json=body, headers=headers)


def _scope_refusal(response) -> str | None:
    if response.status_code != 403:
        return None
    detail = response.json().get("detail")
    match = re.search(r"lacks the (\S+) scope", str(detail))
    return match.group(1) if match else None


async def test_every_route_declares_its_access_once(app):
    undeclared = []
    for route in _routes(app):
        needs = route_access(route)
        if len(needs) != 1 or needs[0] not in ACCESS_LEVELS:
            undeclared.append(f"{sorted(route.methods)} {route.path}: {needs}")
    assert not undeclared, "routes without exactly one declared access (requires/public/...):\n" + "\n".join(undeclared)


async def test_the_openapi_document_shows_each_routes_access(app, client):
    document = (await client.get("/openapi.json")).json()
    for route in _routes(app):
        need = route_access(route)[0]
        for method in route.methods:
            operation = document["paths"][route.path_format][method.lower()]
            assert operation["x-ains-access"] == need, (method, route.path)
            if need in CLIENT_SCOPES:
                assert operation["security"] == [{"HTTPBearer": [need]}]
            elif need == PUBLIC:
                assert "security" not in operation, (method, route.path)
            else:  # the admin, agents, any key: a bearer key, no scope
                assert operation["security"] == [{"HTTPBearer": []}], (method, route.path)
    assert document["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An AINS API key: admin, client or agent",
    }


@pytest.mark.parametrize("scope", CLIENT_SCOPES)
async def test_a_key_with_one_scope_passes_exactly_that_scopes_routes(app, client, scope):
    headers = await create_client(client, "client_scoped", scopes=[scope])
    checked = 0
    for route in _routes(app):
        need = route_access(route)[0]
        for method in route.methods:
            response = await _call(client, method, route.path_format, headers)
            where = f"{method} {route.path_format} -> {response.status_code} {response.text[:200]}"
            if need in CLIENT_SCOPES and need != scope:
                assert response.status_code == 403 and _scope_refusal(response) == need, where
            elif need in CLIENT_SCOPES:
                assert _scope_refusal(response) is None and response.status_code not in (401, 429), where
            elif need == ADMIN:
                assert response.status_code == 403 and response.json()["detail"] == "Admin only", where
            elif need == AGENT:
                assert response.status_code == 403 and "agents" in response.json()["detail"], where
            else:  # PUBLIC, ANY_KEY
                assert response.status_code not in (401, 403, 429), where
            checked += 1
    assert checked == sum(len(route.methods) for route in _routes(app))


async def test_agents_and_the_admin_are_not_limited_by_scopes(app, client):
    agent = await register_agent(client, "agent_scopes")
    for headers in (agent.headers, ADMIN_HEADERS):
        for route in _routes(app):
            for method in route.methods:
                response = await _call(client, method, route.path_format, headers)
                assert _scope_refusal(response) is None, f"{method} {route.path_format}: {response.text[:200]}"


async def test_public_routes_need_no_key_and_others_do(app, client):
    for route in _routes(app):
        need = route_access(route)[0]
        for method in route.methods:
            response = await _call(client, method, route.path_format, None)
            if need == PUBLIC:
                assert response.status_code not in (401, 403), f"{method} {route.path_format}"
            else:
                assert response.status_code == 401, f"{method} {route.path_format} -> {response.status_code}"
    assert ANY_KEY in ACCESS_LEVELS


async def test_scopes_are_listed_and_default_to_all(client):
    created = (
        await client.post("/ains/api-keys", json={"client_id": "client_1", "name": "a"}, headers=ADMIN_HEADERS)
    ).json()
    assert created["scopes"] == list(CLIENT_SCOPES)
    narrow = (
        await client.post(
            "/ains/api-keys",
            json={"client_id": "client_2", "name": "b", "scopes": ["webhooks:read", "tasks:read"]},
            headers=ADMIN_HEADERS,
        )
    ).json()
    assert narrow["scopes"] == ["tasks:read", "webhooks:read"]
    listed = (await client.get("/ains/api-keys?client_id=client_2", headers=ADMIN_HEADERS)).json()["api_keys"]
    assert listed[0]["scopes"] == ["tasks:read", "webhooks:read"]
