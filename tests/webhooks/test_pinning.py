"""SPEC 15 address pinning: which addresses the SSRF guard refuses, and that a delivery connects to the address
it checked, whatever the name answers a moment later (DNS rebinding), with the URL's host in the Host header.

No traffic leaves 127.0.0.1: public addresses appear as strings only, and a hook makes any connection to an
address other than 127.0.0.1 fail before it is opened."""

import pytest

from ains.webhooks import pinning, url_guard
from ains.webhooks.url_guard import ForbiddenTarget, check_target, is_allowed_address
from tests.helpers import create_client, submit, wait_for
from tests.webhooks.test_delivery import deliveries

PUBLIC = "93.184.216.34"  # only ever a string here: connecting to it is made to fail locally

REFUSED = [
    "127.0.0.1",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "192.0.2.1",
    "198.51.100.7",
    "0.0.0.0",
    "224.0.0.1",
    "::1",
    "fe80::1",
    "fc00::1",
    "2001:db8::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "2002:7f00:0001::1",
    "2002:a9fe:a9fe::1",
    "64:ff9b::7f00:1",
]
ALLOWED = ["8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1", PUBLIC]


@pytest.mark.parametrize("address", REFUSED)
def test_non_global_addresses_are_refused(address):
    assert not is_allowed_address(address)


@pytest.mark.parametrize("address", ALLOWED)
def test_global_addresses_are_allowed(address):
    assert is_allowed_address(address)


@pytest.mark.parametrize("address", REFUSED)
async def test_registration_uses_the_same_check(address):
    literal = f"[{address}]" if ":" in address else address
    with pytest.raises(ForbiddenTarget):
        await check_target(f"http://{literal}:8080/hook", allow_private=False)

    async def resolves_to_it(host, port):
        return [address]

    with pytest.raises(ForbiddenTarget):
        await check_target("https://hook.example/x", allow_private=False, resolver=resolves_to_it)
    await check_target("https://hook.example/x", allow_private=True, resolver=resolves_to_it)


async def test_one_forbidden_answer_among_public_ones_refuses_the_target():
    async def mixed(host, port):
        return [PUBLIC, "127.0.0.1"]

    with pytest.raises(ForbiddenTarget, match="127.0.0.1"):
        await url_guard.resolve_target("http://mixed.test/x", allow_private=False, resolver=mixed)
    target = await url_guard.resolve_target("http://Mixed.test:81/x", allow_private=True, resolver=mixed)
    assert (target.host, target.port, target.address) == ("mixed.test", 81, PUBLIC)


class Rebinding:
    """A name that answers a public address first and 127.0.0.1 every time after."""

    def __init__(self, public_answers: int = 1) -> None:
        self.calls: list[tuple[str, int]] = []
        self.public_answers = public_answers

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        return [PUBLIC] if len(self.calls) <= self.public_answers else ["127.0.0.1"]


@pytest.fixture
def connections(monkeypatch):
    """Every connection the pinned client is about to open: (host, port, address). Any to an address other
    than 127.0.0.1 fails right there, before a socket exists."""
    seen: list[tuple[str, int, str]] = []

    def record(host, port, address):
        seen.append((host, port, address))
        if address != "127.0.0.1":
            raise pinning.ConnectError(f"test: not connecting to {address}")

    monkeypatch.setattr(pinning, "before_connect", record)
    return seen


async def test_the_checked_address_is_the_one_connected_to(receivers, connections):
    receiver = receivers()
    port = int(receiver.url.rsplit(":", 1)[1].split("/")[0])
    url = f"http://rebind.test:{port}/hook"
    rebinding = Rebinding()
    pool = pinning.PinnedPool(timeout=2, max_connections=4)
    try:
        # First attempt: the name answers the public address, which is checked and connected to; the HTTP
        # stack does not resolve the name again (it would get 127.0.0.1 now).
        with pytest.raises(pinning.ConnectError, match=PUBLIC):
            await pinning.post(pool, url, content=b"{}", headers={}, allow_private=False, resolver=rebinding)
        assert connections == [("rebind.test", port, PUBLIC)]
        assert rebinding.calls == [("rebind.test", port)]
        # Next attempt: the name now answers 127.0.0.1, which the check refuses: no connection at all.
        with pytest.raises(ForbiddenTarget, match="127.0.0.1"):
            await pinning.post(pool, url, content=b"{}", headers={}, allow_private=False, resolver=rebinding)
        assert connections == [("rebind.test", port, PUBLIC)] and len(rebinding.calls) == 2
        # Without a pinned address (the pool used directly) nothing is connected to.
        with pytest.raises(pinning.ConnectError, match="no checked address"):
            await pool.post(url, content=b"{}", headers={})
        assert len(connections) == 1
    finally:
        await pool.aclose()
    assert receiver.requests == []


class TestRebindingThroughTheDispatcher:
    @pytest.fixture
    def settings_overrides(self):
        return {
            "webhook_allow_private": False,
            "webhook_retry_delays": [0.05],
            "webhook_max_attempts": 2,
            "webhook_timeout_seconds": 2,
        }

    async def test_a_name_rebound_to_loopback_never_gets_a_connection_to_it(
        self, client, receivers, connections, monkeypatch
    ):
        receiver = receivers()
        port = int(receiver.url.rsplit(":", 1)[1].split("/")[0])
        # Public at registration and at the first attempt, 127.0.0.1 from then on.
        rebinding = Rebinding(public_answers=2)
        monkeypatch.setattr(url_guard, "resolver", rebinding)
        owner = await create_client(client, "client_1")
        response = await client.post(
            "/ains/clients/client_1/webhooks",
            json={"url": f"http://rebind.test:{port}/hook", "events": ["task.created"]},
            headers=owner,
        )
        assert response.status_code == 201, response.text
        webhook_id = response.json()["webhook_id"]
        await submit(client, owner)

        async def failed():
            rows = await deliveries(client, owner, webhook_id)
            return rows[0] if rows and rows[0]["status"] == "failed" else None

        delivery = await wait_for(failed, timeout=20, interval=0.05)
        assert delivery, await deliveries(client, owner, webhook_id)
        first, second = delivery["history"]
        assert PUBLIC in first["error"]  # connected (and failed locally) to the address it checked
        assert "127.0.0.1" in second["error"] and "not globally routable" in second["error"]
        assert connections == [("rebind.test", port, PUBLIC)]
        assert len(rebinding.calls) == 3  # registration, then once per attempt
        assert receiver.requests == []


class TestPrivateAllowed:
    @pytest.fixture
    def settings_overrides(self):
        return {"webhook_allow_private": True, "webhook_timeout_seconds": 2}

    async def test_a_name_is_delivered_to_its_resolved_address_with_its_own_host_header(
        self, client, receivers, connections, monkeypatch
    ):
        receiver = receivers()
        port = int(receiver.url.rsplit(":", 1)[1].split("/")[0])
        asked: list[str] = []

        async def local_names(host, port):
            asked.append(host)
            if host != "receiver.test":
                raise OSError(f"unknown name {host}")
            return ["127.0.0.1"]

        monkeypatch.setattr(url_guard, "resolver", local_names)
        owner = await create_client(client, "client_1")
        response = await client.post(
            "/ains/clients/client_1/webhooks",
            json={"url": f"http://receiver.test:{port}/hook", "events": ["task.created"]},
            headers=owner,
        )
        assert response.status_code == 201, response.text
        task = await submit(client, owner)

        async def arrived():
            return receiver.answered

        assert await wait_for(arrived, timeout=20, interval=0.05)
        (request,) = receiver.answered
        assert request.payload["task_id"] == task["task_id"]
        assert request.headers["Host"] == f"receiver.test:{port}"
        assert connections == [("receiver.test", port, "127.0.0.1")]
        assert asked == ["receiver.test"]
