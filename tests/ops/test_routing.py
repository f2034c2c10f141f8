"""Every API route answers its own requests: no route included earlier takes another's path.

Routes are matched in the order the routers are included, and the busiest routes go first:
the tasks router in order of traffic, then the agents router with the heartbeat (ains/main.py).
A path template of one router that also matches a path of another (`/ains/agents/{agent_id}` and
`/ains/agents/leaderboard`, say) would make the later route unreachable: this test fails on any
such pair, whatever the order.
"""

from __future__ import annotations

import re

from starlette.routing import BaseRoute, Match, Route

from ains.core.config import Settings
from ains.main import create_app
from ains.tasks.router import router as tasks_router
from ains.trust.router import router as trust_router


def _in_match_order(routes: list[BaseRoute]) -> list[Route]:
    """The app's routes with methods, in the order a request is matched against them."""
    ordered: list[Route] = []
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            ordered.extend(_in_match_order(included.routes))
        elif isinstance(route, Route) and route.methods:
            ordered.append(route)
    return ordered


def _sample_path(template: str) -> str:
    """A concrete path for a route's template: each parameter replaced by a value no literal segment has."""
    return re.sub(r"\{[^}]+\}", "sample_value_1", template)


def test_each_route_is_the_first_to_match_its_own_paths(tmp_path):
    app = create_app(
        Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/ains.db", data_dir=tmp_path, admin_key="a" * 40)
    )
    routes = _in_match_order(app.routes)
    api = [route for route in routes if route.path.startswith("/ains/")]
    assert len(api) > 50  # the whole API, not an empty list that would pass
    taken = []
    for route in api:
        for method in sorted(route.methods or ()):
            scope = {"type": "http", "path": _sample_path(route.path), "method": method, "root_path": ""}
            first = next(r for r in routes if r.matches(scope)[0] == Match.FULL)
            if first is not route:
                taken.append(f"{method} {route.path} is taken by {first.path}")
    assert not taken, taken


def test_the_busiest_routes_are_matched_first(tmp_path):
    """FastAPI tries the routes in order on every request, about a microsecond each: the routes agents and
    clients call most come first, in this order, with the heartbeat right after the tasks router."""
    app = create_app(
        Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/ains.db", data_dir=tmp_path, admin_key="a" * 40)
    )
    api = [route for route in _in_match_order(app.routes) if route.path.startswith("/ains/")]
    first = [(sorted(route.methods or ())[0], route.path) for route in api[:9]]
    assert first == [
        ("GET", "/ains/tasks/{task_id}"),
        ("POST", "/ains/agents/{agent_id}/tasks/claim"),
        ("POST", "/ains/tasks/{task_id}/start"),
        ("POST", "/ains/tasks/{task_id}/complete"),
        ("POST", "/ains/tasks/{task_id}/fail"),
        ("POST", "/ains/tasks/complete-batch"),
        ("POST", "/ains/tasks/fail-batch"),
        ("POST", "/ains/tasks"),
        ("POST", "/ains/tasks/batch"),
    ]
    heartbeat = next(i for i, route in enumerate(api) if route.path == "/ains/agents/{agent_id}/heartbeat")
    assert heartbeat == len(tasks_router.routes) + len(trust_router.routes)
