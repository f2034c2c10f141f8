"""Dependencies point one way: every import between AINS's packages goes down the layers below.

A package may import from its own layer and from any layer beneath it; a domain's
`models` and `schemas` (what its tables and messages look like) may be read from
anywhere above `core`, and every router may use `auth.dependencies` (the check of
who is calling, which every route needs). The SDK (`client`, `agent`, `identity`) stands apart from
the server: it reads only the domains' schemas, the signed-message format and the clock's timestamp text; a
domain's `cli` module belongs with the command line. The rule counts every import,
at module level or inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ains

ROOT = Path(ains.__file__).parent

# Lowest first.
LAYERS: list[set[str]] = [
    {"core"},
    {"background"},
    {"audit"},
    {"auth"},
    {"trust"},
    {"webhooks"},
    {"tasks"},
    {"workflows"},
    {"schedules"},
    {"agents"},
    {"console", "ops"},
    {"main", "server_process", "cli", "migrate", "migrations", "testing", "__main__"},
]
SDK = {"client", "agent", "identity"}
SDK_MAY_READ = {"auth.signatures", "workflows.builder", "core.clock"}
READABLE_EVERYWHERE = ("models", "schemas")
ROUTE_GUARD = "auth.dependencies"


def _layer(package: str) -> int:
    for index, members in enumerate(LAYERS):
        if package in members:
            return index
    raise AssertionError(f"package {package!r} has no layer: add it to LAYERS in {__file__}")


def _imports() -> list[tuple[str, str, int]]:
    """(importing module, imported module, line) for every import of an `ains.` module."""
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ains.") and not node.level:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
                found.append((module, _existing(targets), node.lineno))
            elif isinstance(node, ast.Import):
                found += [(module, a.name, node.lineno) for a in node.names if a.name.startswith("ains.")]
    return [(module, target.removeprefix("ains."), line) for module, target, line in found]


def _existing(candidates: list[str]) -> str:
    # `from ains.tasks import service` imports ains.tasks.service: judge the most specific module named.
    for candidate in reversed(candidates):
        relative = Path(*candidate.split(".")[1:])
        if (ROOT / relative).with_suffix(".py").exists() or (ROOT / relative).is_dir():
            return candidate
    return candidates[0]


def _package(module: str) -> str:
    # A domain's own commands (`workflows.cli`) belong to the command line, not to the domain's layer.
    return "cli" if module.endswith(".cli") else module.split(".")[0]


def _violation(module: str, target: str) -> str | None:
    source, destination = _package(module), _package(target)
    if source == destination:
        return None
    if source in SDK:
        if destination in SDK or target in SDK_MAY_READ or target.endswith(READABLE_EVERYWHERE):
            return None
        return "the SDK reads only schemas and the signed-message format"
    if destination in SDK:
        return None if source in LAYERS[-1] else "only the entry points use the SDK"
    if source != "core" and target.split(".")[-1] in READABLE_EVERYWHERE:
        return None
    if module.endswith(".router") and target == ROUTE_GUARD:
        return None
    if _layer(destination) <= _layer(source):
        return None
    return f"{destination} is not below {source}"


def test_every_package_has_a_layer():
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    packages |= {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"} | {"migrations"}
    for package in sorted(packages - SDK):
        _layer(package)


def test_imports_point_down_the_layers():
    wrong = [
        f"{module} (line {line}) imports {target}: {reason}"
        for module, target, line in _imports()
        if (reason := _violation(module, target))
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    ("module", "target", "allowed"),
    [
        ("tasks.lifecycle", "webhooks.outbox", True),
        ("webhooks.outbox", "tasks.lifecycle", False),
        ("webhooks.outbox", "tasks.models", True),
        ("core.context", "auth.models", False),
        ("background.runner", "tasks.duties", False),
        ("client", "tasks.schemas", True),
        ("client", "tasks.service", False),
        ("audit.router", "auth.dependencies", True),
        ("audit.service", "auth.dependencies", False),
    ],
)
def test_the_rule_itself(module, target, allowed):
    assert (_violation(module, target) is None) is allowed
