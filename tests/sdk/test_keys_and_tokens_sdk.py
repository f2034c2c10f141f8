"""The SDK's side of SPEC 18: key rotation with a grace period, and registration tokens (create with max_uses
and expiry, list, revoke), on SQLite and PostgreSQL.

The async client speaks to the app in this process (ASGI), under a clock the test moves, so the grace and
the expiry end exactly when they should; the sync client speaks to a real `ains serve` over HTTP."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from ains.auth.schemas import ApiKeyCreated, RegistrationTokenCreated, RegistrationTokenList
from ains.client import AINSClient, AINSError, AsyncAINSClient
from ains.identity import Identity
from ains.webhooks.schemas import DeliveryOut
from tests.conftest import POSTGRES_URL, _admin_execute, unavailable
from tests.helpers import ADMIN_KEY, ServerProcess
from tests.webhooks.receiver import Answer, Receiver

TASK = {"task_type": "sdk", "capability_required": "sdk:v1", "input_data": {}}


@pytest.fixture
def settings_overrides() -> dict:
    return {
        "agent_registration": "token",
        "webhook_allow_private": True,
        "webhook_max_attempts": 1,  # the first failure is final
        "webhook_dispatch_interval_seconds": 0.2,
    }


def _asgi(app, key: str | None = None) -> AsyncAINSClient:
    return AsyncAINSClient("http://ains.test", key, transport=httpx.ASGITransport(app=app))


async def _status(app, key: str) -> int:
    """What a read of the key's own tasks answers: 200 while the key works, 401 once it doesn't."""
    try:
        async with _asgi(app, key) as ains:
            await ains.list_tasks_page(limit=1)
    except AINSError as error:
        return error.status_code
    return 200


# ---------------------------------------------------------------- async, in process, on both databases


async def test_async_rotation_old_key_works_through_the_grace_then_only_the_new(app, clock):
    async with _asgi(app, ADMIN_KEY) as admin:
        old = await admin.create_key("client_rot", "ci", scopes=["tasks:read", "tasks:write"])
        new = await admin.rotate_key(old.key_id, grace_seconds=100)
        assert isinstance(new, ApiKeyCreated)
        assert new.key_id != old.key_id and new.api_key != old.api_key
        assert (new.client_id, new.scopes, new.rotated_from) == (
            "client_rot",
            ["tasks:read", "tasks:write"],
            old.key_id,
        )
        assert new.old_key_expires_at == clock.now + timedelta(seconds=100)
        async with _asgi(app, new.api_key) as client:
            task = await client.submit_task(**TASK)  # the new key acts as the same client
        assert task.client_id == "client_rot"
        assert await _status(app, old.api_key) == 200  # in the grace: both work
        assert await _status(app, new.api_key) == 200
        clock.advance(99.999)
        assert await _status(app, old.api_key) == 200
        clock.advance(0.001)  # the grace is over: the old key is refused, the new one works
        assert await _status(app, old.api_key) == 401
        assert await _status(app, new.api_key) == 200
        listed = {k.key_id: k for k in (await admin.list_keys(client_id="client_rot")).api_keys}
        assert listed[old.key_id].expires_at == new.old_key_expires_at
        assert listed[new.key_id].rotated_from == old.key_id
        # A key past its end cannot be rotated; one that is not there is 404; the same error type either way.
        with pytest.raises(AINSError) as expired:
            await admin.rotate_key(old.key_id)
        assert expired.value.status_code == 409
        with pytest.raises(AINSError) as missing:
            await admin.rotate_key("key_nope")
        assert missing.value.status_code == 404


async def test_async_rotation_keeps_the_lifetime_or_takes_a_new_expiry(app, clock):
    async with _asgi(app, ADMIN_KEY) as admin:
        month = await admin.create_key("client_life", "ci", expires_at=clock.now + timedelta(days=30))
        assert month.expires_at == clock.now + timedelta(days=30)
        default = await admin.rotate_key(month.key_id)  # an hour of grace by default
        assert default.old_key_expires_at == clock.now + timedelta(hours=1)
        assert default.expires_at == clock.now + timedelta(days=30)
        later = clock.now + timedelta(days=2)
        chosen = await admin.rotate_key(default.key_id, grace_seconds=0, expires_at=later)
        assert chosen.expires_at == later
        assert await _status(app, default.api_key) == 401  # no grace: refused at once
        assert await _status(app, chosen.api_key) == 200
        clock.advance(2 * 86400)
        assert await _status(app, chosen.api_key) == 401


async def test_async_registration_tokens_with_max_uses_expiry_and_revocation(app, clock):
    async with _asgi(app, ADMIN_KEY) as admin, _asgi(app) as anonymous:
        fleet = await admin.create_registration_token("fleet", max_uses=2)
        assert isinstance(fleet, RegistrationTokenCreated) and fleet.token and fleet.uses == 0
        for n in range(2):
            registered = await anonymous.register_agent(
                f"agent_tok_{n}", Identity.generate(), ["sdk:v1"], registration_token=fleet.token
            )
            assert registered.api_key
        with pytest.raises(AINSError) as used_up:
            await anonymous.register_agent(
                "agent_tok_2", Identity.generate(), ["sdk:v1"], registration_token=fleet.token
            )
        assert used_up.value.status_code == 401
        with pytest.raises(AINSError) as without:
            await anonymous.register_agent("agent_tok_2", Identity.generate(), ["sdk:v1"])
        assert without.value.status_code == 401

        soon = await admin.create_registration_token("soon", expires_at=clock.now + timedelta(seconds=60))
        revoked = await admin.create_registration_token("revoked")
        await admin.revoke_registration_token(revoked.token_id)
        with pytest.raises(AINSError) as refused:
            await anonymous.register_agent(
                "agent_tok_3", Identity.generate(), ["sdk:v1"], registration_token=revoked.token
            )
        assert refused.value.status_code == 401
        clock.advance(60)
        with pytest.raises(AINSError) as expired:
            await anonymous.register_agent(
                "agent_tok_4", Identity.generate(), ["sdk:v1"], registration_token=soon.token
            )
        assert expired.value.status_code == 401

        listed = await admin.list_registration_tokens()
        assert isinstance(listed, RegistrationTokenList)
        by_id = {t.token_id: t for t in listed.registration_tokens}
        assert revoked.token_id not in by_id  # revoked ones only on request
        assert (by_id[fleet.token_id].uses, by_id[fleet.token_id].max_uses) == (2, 2)
        assert by_id[soon.token_id].expires_at == soon.expires_at and by_id[soon.token_id].uses == 0
        everything = await admin.list_registration_tokens(include_revoked=True)
        assert {t.token_id: t.revoked_at is not None for t in everything.registration_tokens}[revoked.token_id]
        assert fleet.token not in everything.model_dump_json()  # the secret is shown only at creation
        with pytest.raises(AINSError) as missing:
            await admin.revoke_registration_token("regtok_nope")
        assert missing.value.status_code == 404
        agents = {a.agent_id for a in (await admin.list_agents(limit=50)).agents}
        assert agents == {"agent_tok_0", "agent_tok_1"}


async def test_async_token_and_key_calls_need_the_admin(app):
    async with _asgi(app, ADMIN_KEY) as admin:
        key = (await admin.create_key("client_plain", "ci")).api_key
    async with _asgi(app, key) as client:
        for call in (
            client.rotate_key("key_any"),
            client.create_registration_token("mine"),
            client.list_registration_tokens(),
            client.revoke_registration_token("regtok_any"),
        ):
            with pytest.raises(AINSError) as forbidden:
                await call
            assert forbidden.value.status_code == 403


async def test_async_redeliver_and_recover(app):
    """Not SPEC 18, but the same admin-and-owner tooling: SPEC 15's redeliver and recover through the SDK."""
    up = threading.Event()
    receiver = Receiver(by_payload=lambda _payload: Answer(200) if up.is_set() else Answer(503))
    try:
        async with _asgi(app, ADMIN_KEY) as admin:
            key = (await admin.create_key("client_hooks", "ci")).api_key
        async with _asgi(app, key) as owner:
            hook = await owner.create_webhook("client_hooks", receiver.url, ["task.created"])
            since = datetime.now(UTC) - timedelta(seconds=1)
            for _ in range(2):
                await owner.submit_task(**TASK)

            async def all_are(status: str) -> list[DeliveryOut]:
                for _ in range(200):
                    rows = (await owner.webhook_deliveries(hook.webhook_id)).deliveries
                    if len(rows) == 2 and all(d.status == status for d in rows):
                        return rows
                    await asyncio.sleep(0.05)
                raise AssertionError(f"deliveries not all {status}: {rows}")

            first, second = await all_are("failed")
            up.set()
            again = await owner.redeliver(hook.webhook_id, first.delivery_id)
            assert isinstance(again, DeliveryOut) and again.status == "pending" and again.event_id == first.event_id
            with pytest.raises(AINSError) as missing:
                await owner.redeliver(hook.webhook_id, "dlv_nope")
            assert missing.value.status_code == 404
            for _ in range(200):
                rows = {d.delivery_id: d.status for d in (await owner.webhook_deliveries(hook.webhook_id)).deliveries}
                if rows[first.delivery_id] == "succeeded":
                    break
                await asyncio.sleep(0.05)
            assert rows == {first.delivery_id: "succeeded", second.delivery_id: "failed"}
            recovered = await owner.recover_webhook(hook.webhook_id, since=since)
            assert recovered.redelivering == 1  # only the one still failed
            await all_are("succeeded")
        assert sorted(r.payload["event_id"] for r in receiver.answered) == sorted([first.event_id, second.event_id])
    finally:
        receiver.close()


# ---------------------------------------------------------------- sync, over HTTP, a real server on each database


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def token_server(request, tmp_path_factory) -> Iterator[ServerProcess]:
    env = {"AINS_AGENT_REGISTRATION": "token", "AINS_DATA_DIR": str(tmp_path_factory.mktemp("tokens"))}
    name = None
    if request.param == "postgres":
        from sqlalchemy.engine import make_url

        name = f"ains_sdk_{uuid.uuid4().hex[:10]}"
        try:
            asyncio.run(_admin_execute(POSTGRES_URL, f'CREATE DATABASE "{name}"'))
        except Exception as exc:
            unavailable(f"PostgreSQL unavailable at {POSTGRES_URL}: {type(exc).__name__}: {exc}")
        env["AINS_DATABASE_URL"] = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    server = ServerProcess(env)
    try:
        yield server
    finally:
        server.stop()
        if name is not None:
            asyncio.run(_admin_execute(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _works(url: str, key: str) -> int:
    try:
        with AINSClient(url, key) as ains:
            ains.list_tasks_page(limit=1)
    except AINSError as error:
        return error.status_code
    return 200


@pytest.mark.slow
def test_sync_rotation_over_http(token_server):
    url = token_server.url
    with AINSClient(url, ADMIN_KEY) as admin:
        old = admin.create_key("client_sync_rot", "ci")
        new = admin.rotate_key(old.key_id, grace_seconds=3600)
        assert new.rotated_from == old.key_id and new.old_key_expires_at is not None
        assert new.old_key_expires_at > datetime.now(UTC) + timedelta(minutes=59)
        assert _works(url, old.api_key) == 200 and _works(url, new.api_key) == 200  # the grace: both
        with AINSClient(url, new.api_key) as client:
            assert client.submit_task(**TASK).client_id == "client_sync_rot"
        newest = admin.rotate_key(new.key_id, grace_seconds=0)
        assert _works(url, new.api_key) == 401  # no grace: at once
        assert _works(url, newest.api_key) == 200
        assert _works(url, old.api_key) == 200  # its own grace is not shortened by a later rotation


@pytest.mark.slow
def test_sync_registration_tokens_over_http(token_server):
    url = token_server.url
    run = uuid.uuid4().hex[:6]
    with AINSClient(url, ADMIN_KEY) as admin, AINSClient(url) as anonymous:
        made = admin.create_registration_token(f"fleet_{run}", max_uses=3)
        agents = [f"agent_{run}_{n}" for n in range(4)]
        for agent_id in agents[:3]:
            assert anonymous.register_agent(agent_id, Identity.generate(), ["sdk:v1"], registration_token=made.token)
        with pytest.raises(AINSError) as used_up:
            anonymous.register_agent(agents[3], Identity.generate(), ["sdk:v1"], registration_token=made.token)
        assert used_up.value.status_code == 401
        listed = {t.token_id: t for t in admin.list_registration_tokens().registration_tokens}
        assert listed[made.token_id].uses == 3
        other = admin.create_registration_token(f"other_{run}")
        admin.revoke_registration_token(other.token_id)
        with pytest.raises(AINSError) as revoked:
            anonymous.register_agent(agents[3], Identity.generate(), ["sdk:v1"], registration_token=other.token)
        assert revoked.value.status_code == 401
        assert other.token_id not in {t.token_id for t in admin.list_registration_tokens().registration_tokens}
        registered = {a.agent_id for a in admin.list_agents(limit=100).agents}
        assert set(agents[:3]) <= registered and agents[3] not in registered
