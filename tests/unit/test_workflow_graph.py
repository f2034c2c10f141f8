"""The pure graph checks of a workflow (SPEC 17): order, and each refusal naming what is wrong."""

from __future__ import annotations

import pytest

from ains.workflows.graph import GraphError, check_graph


def test_a_plan_research_write_graph_is_ordered_dependencies_first():
    steps = [
        ("write", ["r1", "r2", "r3"]),
        ("r1", ["plan"]),
        ("r2", ["plan"]),
        ("r3", ["plan"]),
        ("plan", []),
    ]
    order = check_graph(steps)
    assert order[0] == "plan" and order[-1] == "write"
    assert order == ["plan", "r1", "r2", "r3", "write"]


def test_independent_steps_keep_the_order_given():
    assert check_graph([("b", []), ("a", []), ("c", ["a"])]) == ["b", "a", "c"]


def test_a_cycle_is_refused_naming_its_keys():
    with pytest.raises(GraphError) as error:
        check_graph([("a", ["c"]), ("b", ["a"]), ("c", ["b"]), ("d", [])])
    assert "cycle" in error.value.message
    for key in ("'a'", "'b'", "'c'"):
        assert key in error.value.message
    assert "'d'" not in error.value.message


def test_a_step_depending_on_itself_is_a_cycle():
    with pytest.raises(GraphError, match="cycle: 'a' -> 'a'"):
        check_graph([("a", ["a"])])


def test_an_unknown_key_is_refused_naming_it():
    with pytest.raises(GraphError) as error:
        check_graph([("a", []), ("b", ["a", "nope"])])
    assert error.value.field == "steps.1.depends_on"
    assert "'nope'" in error.value.message


def test_a_duplicate_key_is_refused_naming_it():
    with pytest.raises(GraphError) as error:
        check_graph([("a", []), ("b", []), ("a", [])])
    assert error.value.field == "steps.2.key"
    assert "'a'" in error.value.message


def test_more_than_100_steps_is_refused():
    check_graph([(f"s{n}", []) for n in range(100)])
    with pytest.raises(GraphError, match="101 steps"):
        check_graph([(f"s{n}", []) for n in range(101)])


def test_more_than_100_dependencies_is_refused():
    leaves = [(f"s{n}", []) for n in range(99)]
    check_graph([*leaves, ("sink", [key for key, _ in leaves])])
    with pytest.raises(GraphError, match="depends on 101 steps"):
        check_graph([("x", []), ("sink", [f"s{n}" for n in range(101)])], max_steps=200)


def test_an_empty_workflow_is_refused():
    with pytest.raises(GraphError):
        check_graph([])


def test_a_long_chain_is_ordered_without_recursion():
    steps = [(f"s{n}", [f"s{n - 1}"] if n else []) for n in range(5000)]
    assert check_graph(steps, max_steps=5000) == [f"s{n}" for n in range(5000)]
