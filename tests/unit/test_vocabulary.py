"""One vocabulary: each set of statuses and the event names are one StrEnum, whose values are the contract (stored
in the database, sent on the wire, named in the docs). A value changed or added here is a change of the API."""

import json
from enum import StrEnum

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from ains.agents.schemas import LIVE_STATUSES, REGISTERED_STATUSES, AgentStatus, LiveStatusValue, RegisteredStatusValue
from ains.client import FINAL_STATUSES as SDK_FINAL_STATUSES
from ains.tasks.lifecycle import ALLOWED_MOVES
from ains.tasks.schemas import FINAL_STATUSES, HELD_STATUSES, TaskStatus, TaskStatusValue
from ains.webhooks.schemas import DeliveryStatus, EventName, EventNameValue
from ains.workflows.schemas import WorkflowStatus, WorkflowStatusValue

CONTRACT: list[tuple[type[StrEnum], list[str]]] = [
    (TaskStatus, ["WAITING", "PENDING", "ASSIGNED", "ACTIVE", "COMPLETED", "FAILED", "CANCELLED"]),
    (AgentStatus, ["AVAILABLE", "BUSY", "INACTIVE", "DEREGISTERED"]),
    (WorkflowStatus, ["RUNNING", "COMPLETED", "FAILED", "CANCELLED"]),
    (DeliveryStatus, ["pending", "succeeded", "failed"]),
    (
        EventName,
        [
            "task.created",
            "task.assigned",
            "task.started",
            "task.completed",
            "task.failed",
            "task.retrying",
            "task.cancelled",
            "workflow.completed",
            "workflow.failed",
            "workflow.cancelled",
        ],
    ),
]


@pytest.mark.parametrize(("enum", "values"), CONTRACT, ids=[enum.__name__ for enum, _ in CONTRACT])
def test_values_are_the_contract(enum, values):
    assert [member.value for member in enum] == values


@pytest.mark.parametrize(("enum", "values"), CONTRACT, ids=[enum.__name__ for enum, _ in CONTRACT])
def test_members_read_as_their_values(enum, values):
    # Messages, logs, SQL parameters and JSON see the plain value, never `TaskStatus.PENDING`.
    for member, value in zip(enum, values, strict=True):
        assert member == value and hash(member) == hash(value)
        assert str(member) == f"{member}" == "%s" % member == value  # noqa: UP031
        assert json.dumps(member) == json.dumps(value)
        assert {value: 1}[member] == 1 and {member: 1}[value] == 1


def test_moves_name_only_task_statuses():
    assert set(ALLOWED_MOVES) == set(TaskStatus)
    for status, targets in ALLOWED_MOVES.items():
        assert type(status) is TaskStatus
        assert all(type(target) is TaskStatus for target in targets), status


def test_named_sets():
    assert {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED} == FINAL_STATUSES
    assert all(not ALLOWED_MOVES[status] for status in FINAL_STATUSES)
    assert SDK_FINAL_STATUSES is FINAL_STATUSES
    # a workflow ends in the same three
    assert {WorkflowStatus(status) for status in FINAL_STATUSES} == set(WorkflowStatus) - {WorkflowStatus.RUNNING}
    assert HELD_STATUSES == (TaskStatus.ASSIGNED, TaskStatus.ACTIVE)
    assert LIVE_STATUSES == (AgentStatus.AVAILABLE, AgentStatus.BUSY)
    assert REGISTERED_STATUSES == (AgentStatus.AVAILABLE, AgentStatus.BUSY, AgentStatus.INACTIVE)


@pytest.mark.parametrize(
    ("literal", "values"),
    [
        (TaskStatusValue, [status.value for status in TaskStatus]),
        (WorkflowStatusValue, [status.value for status in WorkflowStatus]),
        (EventNameValue, [event.value for event in EventName]),
        (LiveStatusValue, ["AVAILABLE", "BUSY"]),
        (RegisteredStatusValue, ["AVAILABLE", "BUSY", "INACTIVE"]),
    ],
)
def test_request_fields_check_a_literal_of_the_values(literal, values):
    # A Literal of plain strings, not the enum: a wrong value is refused as it always was (a literal_error
    # listing the values), and a right one arrives as the plain string.
    adapter = TypeAdapter(literal)
    assert adapter.json_schema() == {"enum": values, "type": "string"}
    assert type(adapter.validate_python(values[0])) is str
    with pytest.raises(ValidationError) as refused:
        adapter.validate_python("nope")
    assert refused.value.errors()[0]["type"] == "literal_error"
    assert refused.value.errors()[0]["ctx"]["expected"].startswith(repr(values[0]))


def test_response_models_send_plain_strings():
    class Out(BaseModel):
        status: TaskStatus
        delivery: DeliveryStatus

    out = Out.model_validate({"status": "PENDING", "delivery": "pending"})
    assert out.model_dump_json() == '{"status":"PENDING","delivery":"pending"}'
    assert out.model_dump(mode="json") == {"status": "PENDING", "delivery": "pending"}
