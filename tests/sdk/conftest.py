"""One real `ains serve` (SQLite) for the SDK, runtime and CLI tests of this package.

Tests share it, so each uses its own client ids, agent ids and capabilities.
"""

import itertools
import uuid

import pytest

from ains.client import AINSClient
from tests.helpers import ADMIN_KEY, ServerProcess

SETTINGS = {
    "AINS_RETRY_EXPONENTIAL_BASE_SECONDS": "0.1",
    "AINS_RETRY_FIXED_SECONDS": "0.1",
    "AINS_AGENT_STALE_SECONDS": "3",  # heartbeats every second
    "AINS_ASSIGN_LEASE_SECONDS": "1",
    "AINS_TIMEOUT_CHECK_SECONDS": "0.2",
    "AINS_WEBHOOK_ALLOW_PRIVATE": "true",
}
_names = itertools.count()


@pytest.fixture(scope="package")
def server(tmp_path_factory):
    process = ServerProcess(SETTINGS | {"AINS_DATA_DIR": str(tmp_path_factory.mktemp("sdk"))})
    yield process
    process.stop()


@pytest.fixture
def unique():
    """A fresh name per call: ids and capabilities no other test uses."""
    run = uuid.uuid4().hex[:6]
    return lambda prefix: f"{prefix}_{run}_{next(_names)}"


@pytest.fixture
def admin(server):
    with AINSClient(server.url, ADMIN_KEY) as client:
        yield client


@pytest.fixture
def client_key(admin, unique):
    client_id = unique("client")
    return client_id, admin.create_key(client_id, "sdk tests").api_key
