"""The checks a workflow's graph must pass before anything is stored, as pure functions (no database).

`check_graph` takes the steps as (key, [keys it depends on]) and answers a topological order of the keys
(every step after the steps it depends on; among steps that are ready together, the order they were given),
or raises `GraphError` naming the field and what is wrong: too many steps, a duplicate key, a step with too
many dependencies, a dependency on an unknown key, or a cycle (with its keys, in order).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

MAX_STEPS = 100
MAX_DEPENDENCIES = 100


class GraphError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def check_graph(
    steps: Sequence[tuple[str, Sequence[str]]],
    *,
    max_steps: int = MAX_STEPS,
    max_dependencies: int = MAX_DEPENDENCIES,
) -> list[str]:
    if not steps:
        raise GraphError("steps", "a workflow needs at least one step")
    if len(steps) > max_steps:
        raise GraphError("steps", f"{len(steps)} steps; a workflow holds at most {max_steps}")
    index: dict[str, int] = {}
    for position, (key, _) in enumerate(steps):
        if key in index:
            raise GraphError(f"steps.{position}.key", f"duplicate step key {key!r} (also step {index[key]})")
        index[key] = position
    for position, (key, depends_on) in enumerate(steps):
        if len(depends_on) > max_dependencies:
            raise GraphError(
                f"steps.{position}.depends_on",
                f"step {key!r} depends on {len(depends_on)} steps; at most {max_dependencies}",
            )
        for dependency in depends_on:
            if dependency not in index:
                raise GraphError(f"steps.{position}.depends_on", f"step {key!r} depends on unknown key {dependency!r}")
    # Kahn's algorithm, taking ready steps in the order they were given.
    dependencies = [set(depends_on) for _, depends_on in steps]
    dependents: list[list[int]] = [[] for _ in steps]
    waiting = [len(deps) for deps in dependencies]
    for position, deps in enumerate(dependencies):
        for dependency in deps:
            dependents[index[dependency]].append(position)
    ready = [position for position, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        position = heapq.heappop(ready)
        order.append(steps[position][0])
        for dependent in dependents[position]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                heapq.heappush(ready, dependent)
    if len(order) < len(steps):
        cycle = find_cycle(steps, [position for position, count in enumerate(waiting) if count > 0])
        raise GraphError("steps", "dependency cycle: " + " -> ".join(repr(key) for key in cycle))
    return order


def find_cycle(steps: Sequence[tuple[str, Sequence[str]]], candidates: list[int]) -> list[str]:
    """One cycle among the steps Kahn's algorithm could not order, as keys ending where it began."""
    index = {key: position for position, (key, _) in enumerate(steps)}
    left = set(candidates)
    # Every step left over depends on at least one other step left over: follow such edges until one repeats.
    position = min(candidates)
    seen: dict[int, int] = {}
    path: list[int] = []
    while position not in seen:
        seen[position] = len(path)
        path.append(position)
        position = next(index[key] for key in steps[position][1] if index[key] in left)
    cycle = path[seen[position] :] + [position]
    return [steps[p][0] for p in cycle]
