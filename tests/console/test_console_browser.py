"""The operator console (SPEC 19) driven in a real headless browser against a real `ains serve`.

The browser is Debian's chromium (scripts/install-browser.sh installs it), driven by Playwright pointed at
/usr/bin/chromium: Playwright's own browser downloads are not used. Without chromium these tests skip (with
AINS_TEST_REQUIRE_SERVICES=1, as in CI, they fail).

Set AINS_CONSOLE_SCREENSHOTS=docs/console to write the screenshots docs/console.md shows; otherwise they go to a
temporary directory (the pages are still rendered and looked at).
"""

from __future__ import annotations

import http.server
import os
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from ains.identity import Identity
from tests.conftest import unavailable
from tests.helpers import ADMIN, ServerProcess, bearer, free_port

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("AINS_TEST_CHROMIUM", "/usr/bin/chromium")
LIVE_TIMEOUT_MS = 15_000  # the console polls every 3 s


class _Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("console")
    process = ServerProcess(
        {
            "AINS_DATA_DIR": str(data),
            "AINS_WEBHOOK_ALLOW_PRIVATE": "true",
            "AINS_WEBHOOK_MAX_ATTEMPTS": "1",
        }
    )
    yield process
    process.stop()


@pytest.fixture(scope="module")
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def _client_key(api: httpx.Client, client_id: str) -> str:
    response = api.post("/ains/api-keys", json={"client_id": client_id, "name": "console test"}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()["api_key"]


@pytest.fixture(scope="module")
def keys(api: httpx.Client) -> dict[str, str]:
    return {"alice": _client_key(api, "alice"), "bob": _client_key(api, "bob")}


def _submit(api: httpx.Client, key: str, **fields) -> dict:
    body = {"task_type": "summarise", "capability_required": "text:v1", "input_data": {"text": "hello"}} | fields
    response = api.post("/ains/tasks", json=body, headers=bearer(key))
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not os.path.exists(CHROMIUM):
        unavailable(f"no chromium at {CHROMIUM}: run scripts/install-browser.sh")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


def _signed_in(browser, server: ServerProcess, key: str, **context_options):
    context = browser.new_context(**context_options)
    page = context.new_page()
    page.goto(f"{server.url}/console")
    assert "/console/sign-in" in page.url
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server.url}/console")
    return context, page


def test_sign_in_watch_a_task_arrive_open_it_and_cancel_it(browser, server, api, keys):
    context, page = _signed_in(browser, server, keys["alice"])
    try:
        cookie = next(c for c in context.cookies() if c["name"] == "ains_console")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert keys["alice"] not in cookie["value"]

        page.get_by_role("link", name="Tasks").click()
        page.wait_for_url(f"{server.url}/console/tasks")
        task = _submit(api, keys["alice"], input_data={"text": "appears live"})
        # No reload: the page sees the change and swaps its content in.
        link = page.get_by_role("link", name=task["task_id"])
        link.wait_for(timeout=LIVE_TIMEOUT_MS)
        link.click()
        page.wait_for_url(f"{server.url}/console/tasks/{task['task_id']}")
        assert page.locator("#task-status").inner_text() == "PENDING"
        assert "appears live" in page.locator("pre.json").first.inner_text()

        page.get_by_role("button", name="Cancel task…").click()
        dialog = page.locator("dialog#confirm")
        assert dialog.is_visible()
        assert task["task_id"] in dialog.inner_text()
        dialog.get_by_role("button", name="Confirm").click()
        page.locator("#task-status", has_text="CANCELLED").wait_for()
        assert f"Task {task['task_id']} cancelled." in page.locator(".flash.ok").inner_text()
        assert api.get(f"/ains/tasks/{task['task_id']}", headers=bearer(keys["alice"])).json()["status"] == "CANCELLED"

        # A change elsewhere a moment later swaps the page's content in; the action's message stays, once.
        page.locator("#task-status").evaluate("element => { element.dataset.beforeSwap = 'yes'; }")
        _submit(api, keys["alice"], input_data={"text": "a change elsewhere"})
        page.wait_for_function(
            "() => document.querySelector('#task-status').dataset.beforeSwap === undefined", timeout=LIVE_TIMEOUT_MS
        )
        assert page.locator(".flash.ok").all_inner_texts() == [f"Task {task['task_id']} cancelled."]
    finally:
        context.close()


def test_a_status_change_made_elsewhere_shows_without_reload(browser, server, api, keys):
    task = _submit(api, keys["alice"])
    context, page = _signed_in(browser, server, keys["alice"])
    try:
        page.goto(f"{server.url}/console/tasks/{task['task_id']}")
        assert page.locator("#task-status").inner_text() == "PENDING"
        response = api.post(f"/ains/tasks/{task['task_id']}/cancel", json={"reason": "from the API"}, headers=ADMIN)
        assert response.status_code == 200, response.text
        page.locator("#task-status", has_text="CANCELLED").wait_for(timeout=LIVE_TIMEOUT_MS)
        assert "from the API" in page.locator("ol.timeline").inner_text()
    finally:
        context.close()


def test_a_client_sees_only_its_own_tasks(browser, server, api, keys):
    mine = _submit(api, keys["alice"])
    theirs = _submit(api, keys["bob"])
    context, page = _signed_in(browser, server, keys["alice"])
    try:
        page.goto(f"{server.url}/console/tasks")
        assert page.get_by_role("link", name=mine["task_id"]).count() == 1
        assert theirs["task_id"] not in page.content()
        response = page.goto(f"{server.url}/console/tasks/{theirs['task_id']}")
        assert response.status == 404
        assert theirs["input_data"]["text"] not in page.locator("main").inner_text()
        # Nor can the client act on it, even with a valid CSRF token.
        token = page.locator("input[name=csrf]").first.get_attribute("value")
        forged = context.request.post(
            f"{server.url}/console/tasks/{theirs['task_id']}/cancel",
            form={"csrf": token, "confirmed": "yes", "reason": "not mine"},
            max_redirects=0,
        )
        assert forged.status == 404
        assert api.get(f"/ains/tasks/{theirs['task_id']}", headers=ADMIN).json()["status"] == "PENDING"
        # And the audit log is the admin's.
        assert page.goto(f"{server.url}/console/audit").status == 403
    finally:
        context.close()


def test_a_post_without_the_csrf_token_is_refused(browser, server, api, keys):
    task = _submit(api, keys["alice"])
    context, page = _signed_in(browser, server, keys["alice"])
    try:
        url = f"{server.url}/console/tasks/{task['task_id']}/cancel"
        missing = context.request.post(url, form={"confirmed": "yes", "reason": "forged"}, max_redirects=0)
        assert missing.status == 403
        assert "CSRF" in missing.text()
        wrong = context.request.post(url, form={"csrf": "x" * 43, "confirmed": "yes"}, max_redirects=0)
        assert wrong.status == 403
        # A token from another session is no good either.
        other_context, other_page = _signed_in(browser, server, keys["alice"])
        other_token = other_page.locator("input[name=csrf]").first.get_attribute("value")
        other_context.close()
        borrowed = context.request.post(url, form={"csrf": other_token, "confirmed": "yes"}, max_redirects=0)
        assert borrowed.status == 403
        assert api.get(f"/ains/tasks/{task['task_id']}", headers=bearer(keys["alice"])).json()["status"] == "PENDING"
        # Signing in is a form too: a cross-site sign-in without the token is refused.
        assert httpx.post(f"{server.url}/console/sign-in", data={"api_key": keys["alice"]}).status_code == 403
    finally:
        context.close()


def _register_agent(api: httpx.Client, agent_id: str, capabilities: list[str]) -> str:
    body = Identity.generate().registration(agent_id) | {"capabilities": capabilities, "max_concurrency": 4}
    response = api.post("/ains/agents", json=body)
    assert response.status_code == 201, response.text
    return response.json()["api_key"]


def _work(api: httpx.Client, agent_id: str, key: str, outcomes: list[bool]) -> None:
    for succeed in outcomes:
        response = api.post(
            f"/ains/agents/{agent_id}/tasks/claim", json={"max_tasks": 1, "start": True}, headers=bearer(key)
        )
        assert response.status_code == 200, response.text
        (task,) = response.json()["tasks"]
        if succeed:
            body = {"attempt": task["attempt"], "result_data": {"summary": "done"}}
            response = api.post(f"/ains/tasks/{task['task_id']}/complete", json=body, headers=bearer(key))
        else:
            body = {"attempt": task["attempt"], "error_message": "model timed out", "retryable": False}
            response = api.post(f"/ains/tasks/{task['task_id']}/fail", json=body, headers=bearer(key))
        assert response.status_code == 200, response.text


def test_admin_pages_with_data_and_screenshots(browser, server, api, keys, receiver, tmp_path):
    """The admin's view of a working installation; writes the screenshots docs/console.md shows."""
    shots = Path(os.environ.get("AINS_CONSOLE_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    carol = _client_key(api, "carol")
    for url in (receiver, f"http://127.0.0.1:{free_port()}/down"):
        response = api.post(
            "/ains/clients/carol/webhooks",
            json={"url": url, "events": ["task.completed", "task.failed"]},
            headers=ADMIN,
        )
        assert response.status_code == 201, response.text
    summariser = _register_agent(api, "summariser-1", ["text:v1"])
    _register_agent(api, "translator-1", ["translate:v2"])
    for index in range(6):
        _submit(api, carol, input_data={"text": f"document {index}"}, priority=5 + index % 3)
    _work(api, "summariser-1", summariser, [True, True, False, True])
    for capability in ("translate:v2", "images:v1"):
        _submit(api, carol, capability_required=capability, priority=8)
    step = {"task_type": "etl", "capability_required": "etl:v1", "input_data": {}}
    graph = {"fetch": [], "clean": ["fetch"], "enrich": ["fetch"], "load": ["clean", "enrich"], "report": ["load"]}
    response = api.post(
        "/ains/workflows",
        json={"name": "nightly import", "steps": [step | {"key": k, "depends_on": d} for k, d in graph.items()]},
        headers=bearer(carol),
    )
    assert response.status_code == 201, response.text
    workflow_id = response.json()["workflow_id"]
    etl_key = _register_agent(api, "etl-1", ["etl:v1"])
    _work(api, "etl-1", etl_key, [True])
    response = api.post(
        "/ains/schedules",
        json={"name": "hourly digest", "cron": "0 * * * *", "task": step | {"task_type": "digest"}},
        headers=bearer(carol),
    )
    assert response.status_code == 201, response.text

    admin_key = ADMIN["Authorization"].split()[1]
    context, page = _signed_in(browser, server, admin_key, viewport={"width": 1280, "height": 900})
    try:
        assert page.locator("h1").inner_text() == "Overview"
        assert page.locator("svg.chart").count() == 1
        assert "4 completed · 1 failed attempts" in " ".join(page.locator("#throughput").inner_text().split())
        page.screenshot(path=str(shots / "overview.png"), full_page=True)

        page.get_by_role("link", name="Tasks").click()
        page.wait_for_url(re.compile(r".*/console/tasks$"))
        page.screenshot(path=str(shots / "tasks.png"), full_page=True)
        page.get_by_label("Status").select_option("COMPLETED")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url(re.compile(r".*status=COMPLETED.*"))
        page.locator("#task-table a.id").first.click()
        page.wait_for_url(re.compile(r".*/console/tasks/[^/?]+$"))
        page.locator("#task-status", has_text="COMPLETED").wait_for()
        assert "attempt 1 completed" in page.locator("ol.timeline").inner_text()
        page.screenshot(path=str(shots / "task.png"), full_page=True)

        page.goto(f"{server.url}/console/agents")
        assert page.get_by_role("link", name="summariser-1").count() == 1
        page.screenshot(path=str(shots / "agents.png"), full_page=True)
        page.get_by_role("link", name="summariser-1").click()
        page.wait_for_url(f"{server.url}/console/agents/summariser-1")
        assert "verified" in page.locator("#chain").inner_text()
        page.get_by_label("Reason").fill("reviewed by the operator")
        page.get_by_role("button", name="Adjust trust…").click()
        page.locator("dialog#confirm").get_by_role("button", name="Confirm").click()
        page.locator(".flash.ok", has_text="Trust adjusted").wait_for()
        assert page.locator("svg.chart.trust polyline").count() == 1
        page.screenshot(path=str(shots / "agent.png"), full_page=True)

        page.goto(f"{server.url}/console/webhooks")
        page.locator("text=failing").first.wait_for(timeout=LIVE_TIMEOUT_MS)
        page.screenshot(path=str(shots / "webhooks.png"), full_page=True)
        page.locator("table a.id").last.click()
        page.wait_for_url(re.compile(r".*/console/webhooks/[^/]+$"))
        page.get_by_role("button", name="Redeliver…").first.click()
        page.locator("dialog#confirm").get_by_role("button", name="Confirm").click()
        page.locator(".flash.ok", has_text="queued to be sent again").wait_for()
        page.screenshot(path=str(shots / "webhook.png"), full_page=True)

        page.goto(f"{server.url}/console/audit")
        assert "trust.adjust" in page.locator("main").inner_text()
        assert "webhook.redeliver" in page.locator("main").inner_text()
        page.screenshot(path=str(shots / "audit.png"), full_page=True)

        # A click that opens a page returns once the new page starts loading: wait for it to finish
        # before counting what is on it (a count does not wait).
        page.get_by_role("link", name="Workflows").click()
        page.wait_for_url(f"{server.url}/console/workflows")
        page.get_by_role("link", name=workflow_id).click()
        page.wait_for_url(f"{server.url}/console/workflows/{workflow_id}")
        assert page.locator("svg.graph a.node").count() == 5
        assert page.locator("svg.graph .node-completed").count() == 1
        page.screenshot(path=str(shots / "workflow.png"), full_page=True)
        page.get_by_role("link", name="Schedules").click()
        page.wait_for_url(f"{server.url}/console/schedules")
        assert "hourly digest" in page.locator("main").inner_text()
        page.screenshot(path=str(shots / "schedules.png"), full_page=True)

        # A narrow window: the same pages, one column, nothing cut off.
        page.set_viewport_size({"width": 390, "height": 844})
        narrow = ("/console", "/console/tasks", "/console/agents/summariser-1", f"/console/workflows/{workflow_id}")
        for path in (*narrow, "/console/schedules", "/console/keys"):
            page.goto(f"{server.url}{path}")
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390 + 1, f"{path} scrolls sideways at 390 px: {width}"
            if path == "/console":
                page.screenshot(path=str(shots / "overview-narrow.png"), full_page=True)
        page.goto(f"{server.url}/console/tasks")
        page.screenshot(path=str(shots / "tasks-narrow.png"), full_page=True)
    finally:
        context.close()


def test_empty_states_and_keyboard_sign_in(browser, server, keys):
    """A fresh client: every page says what to do next; sign-in works from the keyboard alone."""
    dave = _client_key(httpx.Client(base_url=server.url), "dave")
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"{server.url}/console/webhooks")
        page.keyboard.type(dave)  # the key field has focus
        page.keyboard.press("Enter")
        page.wait_for_url(f"{server.url}/console/webhooks")
        assert "No webhooks yet" in page.locator("main").inner_text()
        page.goto(f"{server.url}/console/tasks")
        assert "No tasks yet" in page.locator("main").inner_text()
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    finally:
        context.close()


def test_admin_keys_create_rotate_and_revoke(browser, server, api, keys, tmp_path):
    """The admin's keys page: create a key (its secret shown once), rotate it with a grace period, revoke the
    old one; a client neither sees the page in the navigation nor reaches it. Writes keys*.png for the docs."""
    shots = Path(os.environ.get("AINS_CONSOLE_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    response = api.post(
        "/ains/api-keys", json={"client_id": "frank", "name": "short-lived", "expires_at": soon}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    time.sleep(1.5)  # so the list shows an expired key too

    admin_key = ADMIN["Authorization"].split()[1]
    context, page = _signed_in(browser, server, admin_key, viewport={"width": 1280, "height": 900})
    try:
        page.get_by_role("link", name="Keys").click()
        page.wait_for_url(f"{server.url}/console/keys")
        frank = page.locator("#key-table tr", has_text="frank")
        assert "expired" in frank.locator("td[data-label=state]").inner_text()

        page.locator("summary", has_text="Create a client key").click()
        page.get_by_label("Client id").fill("erin")
        page.get_by_label("Name").fill("reporting job")
        page.get_by_label("tasks:write").uncheck()
        page.get_by_label("webhooks:write").uncheck()
        page.get_by_role("button", name="Create key…").click()
        dialog = page.locator("dialog#confirm")
        assert "shown once" in dialog.inner_text()
        dialog.get_by_role("button", name="Confirm").click()
        page.locator("#new-secret").wait_for()
        first = page.locator("#secret-value").input_value()
        assert api.get("/ains/tasks", headers=bearer(first)).status_code == 200
        assert api.post("/ains/tasks", json={}, headers=bearer(first)).status_code == 403  # no tasks:write
        # Something else changes while the secret is on screen: the page does not swap it away.
        _submit(api, keys["alice"])
        page.wait_for_timeout(4000)
        assert page.locator("#secret-value").input_value() == first
        page.screenshot(path=str(shots / "keys-created.png"), full_page=True)
        page.get_by_role("link", name="Done: I have copied it").click()
        page.wait_for_url(f"{server.url}/console/keys")
        assert first not in page.content()

        created = api.get("/ains/api-keys", params={"client_id": "erin"}, headers=ADMIN).json()["api_keys"]
        (old_id,) = [row["key_id"] for row in created]
        row = page.locator(f"tr[data-key-id='{old_id}']")
        row.get_by_label("Grace period").select_option("300")
        row.get_by_role("button", name="Rotate…").click()
        assert old_id in dialog.inner_text()
        dialog.get_by_role("button", name="Confirm").click()
        page.locator("#new-secret", has_text="Key rotated").wait_for()
        second = page.locator("#secret-value").input_value()
        assert second != first
        assert old_id in page.locator("#new-secret").inner_text()
        for key in (first, second):  # both work during the grace period
            assert api.get("/ains/tasks", headers=bearer(key)).status_code == 200
        page.get_by_role("link", name="Done: I have copied it").click()
        page.wait_for_url(f"{server.url}/console/keys")
        assert "rotated" in page.locator(f"tr[data-key-id='{old_id}'] td[data-label=state]").inner_text()
        page.screenshot(path=str(shots / "keys.png"), full_page=True)

        page.locator(f"tr[data-key-id='{old_id}']").get_by_role("button", name="Revoke…").click()
        assert old_id in dialog.inner_text()
        dialog.get_by_role("button", name="Confirm").click()
        page.locator(".flash.ok", has_text=f"Key {old_id} revoked").wait_for()
        assert page.locator(f"tr[data-key-id='{old_id}']").count() == 0
        assert api.get("/ains/tasks", headers=bearer(first)).status_code == 401
        assert api.get("/ains/tasks", headers=bearer(second)).status_code == 200
        page.goto(f"{server.url}/console/keys?revoked=1")
        assert "revoked" in page.locator(f"tr[data-key-id='{old_id}'] td[data-label=state]").inner_text()
    finally:
        context.close()

    context, page = _signed_in(browser, server, keys["bob"])
    try:
        assert page.get_by_role("link", name="Keys").count() == 0
        assert page.goto(f"{server.url}/console/keys").status == 403
    finally:
        context.close()
