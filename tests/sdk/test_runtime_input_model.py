"""A handler that declares `input_model=`: it gets the input as that Pydantic model, and an input that
does not fit fails the attempt for good with the fields named."""

import asyncio

import pydantic
import pytest

from ains.agent import Agent
from ains.client import AsyncAINSClient


class Order(pydantic.BaseModel):
    item: str
    quantity: int = pydantic.Field(gt=0)


class Receipt(pydantic.BaseModel):
    line: str


@pytest.fixture
async def setup(server, client_key, unique, tmp_path):
    _, key = client_key
    capability = f"{unique('cap')}:v1"
    agent = Agent(server.url, unique("agent"), tmp_path / "agent.key", [capability], poll_wait_seconds=1)
    received: list[object] = []

    @agent.handler(capability, input_model=Order)
    async def take(order: Order) -> Receipt:
        received.append(order)
        return Receipt(line=f"{order.quantity} x {order.item}")

    running = asyncio.create_task(agent.run_async(install_signal_handlers=False))
    async with AsyncAINSClient(server.url, key) as client:
        yield client, capability, received
    agent.stop()
    await asyncio.wait_for(running, timeout=30)


async def test_the_handler_gets_the_model_and_its_returned_model_is_the_result(setup):
    client, capability, received = setup
    task = await client.submit_task(
        task_type="order", capability_required=capability, input_data={"item": "tea", "quantity": 2}
    )
    done = await client.wait_for_task(task.task_id, timeout=20)
    assert done.status == "COMPLETED"
    assert done.result_data == {"line": "2 x tea"}
    assert received == [Order(item="tea", quantity=2)]


async def test_an_input_that_does_not_fit_fails_for_good_naming_the_fields(setup):
    client, capability, received = setup
    task = await client.submit_task(
        task_type="order", capability_required=capability, input_data={"quantity": 0}, max_retries=3
    )
    done = await client.wait_for_task(task.task_id, timeout=20)
    assert done.status == "FAILED"
    assert done.retry_count == 0  # not retried: the same input cannot fit the next time
    assert "Order" in done.error_message and "item" in done.error_message and "quantity" in done.error_message
    assert received == []
