"""An agent for the SIGTERM test, configured by environment: its handler takes a second and logs each run."""

import os
import time

from ains.agent import Agent

agent = Agent(
    os.environ["AINS_URL"],
    os.environ["SAMPLE_AGENT_ID"],
    os.environ["SAMPLE_KEY_FILE"],
    [os.environ["SAMPLE_CAPABILITY"]],
    max_concurrency=2,
    poll_wait_seconds=1,
    grace_seconds=10,
)


@agent.handler(os.environ["SAMPLE_CAPABILITY"])
def slow(input_data: dict) -> dict:
    with open(os.environ["SAMPLE_RUN_LOG"], "a") as log:
        log.write(f"start {input_data['n']}\n")
    time.sleep(1)
    with open(os.environ["SAMPLE_RUN_LOG"], "a") as log:
        log.write(f"end {input_data['n']}\n")
    return {"n": input_data["n"]}
