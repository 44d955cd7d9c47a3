"""The operator console in headless Chromium against `remediate serve` as a process: sign in, approve, sign out."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote, unquote

import httpx2
from selenium.common.exceptions import (
    NoAlertPresentException,
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import Select, WebDriverWait
from temporalio.client import Client

from service.runs.audit import AuditSnapshot
from service.runs.state import RunState
from service.stores.postgres import PostgresAuditStore
from service.vocabulary.modes import Mode
from tests.support.browser import chromium, screenshot
from tests.support.crash import webhook_message
from tests.support.deployment import AUTH, ONCALL, TOKEN, cli, env, finished, write_config
from tests.support.jobs import new_database
from tests.support.processes import start
from tests.support.rail_target import PLAYBOOK, RailTarget, playbook
from tests.support.servers import Postgres, serving, start_alertmanager

T = TypeVar("T")
HOSTILE = '<img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script>'
LINK = "javascript:document.title='pwned'"
TEMPORAL_UI = "http://temporal-ui.example:8080"
VIEWER = "viewer-token-for-the-noc-screen-0123"


def _gated_playbook() -> str:
    """The rail target's one-read, one-write playbook, its write behind an approval by `oncall`."""
    return PLAYBOOK.format(name="console-fix", alertname="ConsoleFix", extra="approvers: [oncall]").replace(
        "    approval: none\n", ""
    )


def _text(browser: WebDriver) -> str:
    """The page's text, or nothing while a navigation or a refresh of the story replaces it."""
    try:
        return str(browser.find_element(By.TAG_NAME, "body").text)
    except WebDriverException as exc:
        if _replaced(exc):
            return ""
        raise


def _replaced(exc: WebDriverException) -> bool:
    """The element was on a page that a navigation or the story's refresh has replaced (chromedriver says so in
    more than one way)."""
    return isinstance(exc, NoSuchElementException | StaleElementReferenceException) or (
        "does not belong to the document" in str(exc)
    )


def _steady(act: Callable[[], T]) -> T:
    """Do `act` again if the story it touches was replaced meanwhile (a run in progress refreshes its story)."""
    for _ in range(20):
        try:
            return act()
        except WebDriverException as exc:
            if not _replaced(exc):
                raise
            time.sleep(0.3)
    return act()


def _at(browser: WebDriver, path: str, within: float = 30) -> None:
    """Until the browser has arrived at `path` (a click that submits a form returns before the next page loads)."""
    deadline = time.monotonic() + within
    while path not in browser.current_url:
        assert time.monotonic() < deadline, f"still at {browser.current_url}, not {path}"
        time.sleep(0.2)


def _wait(browser: WebDriver, seen: str, within: float = 60, reload: bool = True) -> None:
    """Until the page's text shows `seen` (reloading between looks unless the page refreshes itself)."""
    deadline = time.monotonic() + within
    while seen not in _text(browser):
        if time.monotonic() > deadline:
            raise AssertionError(f"never saw {seen!r}: {_text(browser)[:2000]}")
        time.sleep(0.5)
        if reload:
            browser.refresh()


def _no_script_ran(browser: WebDriver) -> None:
    try:
        alert = browser.switch_to.alert
    except NoAlertPresentException:
        alert = None
    assert alert is None, "a dialog opened"
    assert "pwned" not in browser.title


def labels(key: str) -> dict[str, str]:
    return {"alertname": "ConsoleFix", "key": key, "evil": HOSTILE, "link": LINK}


def _viewer_cannot_decide(browser: WebDriver, base: str, shots: Path) -> None:
    """A viewer signs in and sees the waiting run without Approve or Reject; a decision it POSTs anyway, with its own
    CSRF token, is refused; then it signs out."""
    browser.get(f"{base}/ui/sign-in")
    browser.find_element(By.ID, "token").send_keys(VIEWER)
    browser.find_element(By.CSS_SELECTOR, "form button").click()
    _wait(browser, "watcher (viewer)", reload=False)
    browser.get(f"{base}/ui/?playbook=console-fix")
    _wait(browser, "awaiting_approval")
    run = str(browser.find_element(By.CSS_SELECTOR, ".runs a").get_attribute("href"))
    browser.get(run)
    _wait(browser, "Approval", reload=False)
    assert not browser.find_elements(By.CSS_SELECTOR, "button.approve, button.reject")
    screenshot(browser, shots, "run-as-viewer")
    csrf = str(browser.find_element(By.CSS_SELECTOR, ".who input[name=csrf]").get_attribute("value"))
    cookie = browser.get_cookie("remediate_console")
    assert cookie is not None
    with httpx2.Client(timeout=30, cookies={"remediate_console": str(cookie["value"])}) as http:
        refused = http.post(f"{run}/decide", data={"verdict": "approve", "csrf": csrf})
    assert refused.status_code == 403 and "A viewer cannot decide" in refused.text, refused.text[:500]
    browser.find_element(By.CSS_SELECTOR, ".who button").click()
    _at(browser, "/ui/sign-in")


def _approve_and_flip(browser: WebDriver, base: str, shots: Path) -> None:
    """Sign in (after the webhook's token is refused), approve the waiting run, watch it succeed, turn the switch on."""
    browser.get(f"{base}/ui/")
    assert browser.current_url.endswith("/ui/sign-in")  # no session: the sign-in page only
    screenshot(browser, shots, "sign-in")
    browser.find_element(By.ID, "token").send_keys(TOKEN)  # the webhook's token is no approver's
    browser.find_element(By.CSS_SELECTOR, "form button").click()
    _wait(browser, "That token is not an approver's or a viewer's token.", reload=False)
    _steady(lambda: browser.find_element(By.ID, "token").send_keys(ONCALL))
    browser.find_element(By.CSS_SELECTOR, "form button").click()
    _wait(browser, "Sign out", reload=False)  # signed in: the runs page, with the session's bar
    # The suite's other tests share this Temporal and start hundreds of runs: filter to this playbook's, as on-call
    # would, so ours are not pushed off the newest hundred.
    browser.get(f"{base}/ui/?playbook=console-fix")
    _wait(browser, "awaiting_approval")
    screenshot(browser, shots, "runs")
    browser.find_element(By.PARTIAL_LINK_TEXT, "console-fix").click()
    _at(browser, "/ui/runs/")
    _wait(browser, "Approve", reload=True)
    shown = _steady(lambda: str(browser.find_element(By.CSS_SELECTOR, ".labels").text))
    assert HOSTILE in shown and LINK in shown  # shown as text, exactly as the alert sent them
    assert not browser.find_elements(By.CSS_SELECTOR, ".labels img, .labels script, .labels a")
    _no_script_ran(browser)
    screenshot(browser, shots, "run-waiting")
    _steady(lambda: browser.find_element(By.ID, "comment").send_keys("checked the queue, go"))
    _steady(lambda: browser.find_element(By.CSS_SELECTOR, "button.approve").click())
    _wait(browser, "Your decision: counted", reload=False)
    _wait(browser, "succeeded", reload=False)  # the page refreshes its own story as the run goes on
    assert "oncall (console): approve, counted" in _text(browser)
    _no_script_ran(browser)
    screenshot(browser, shots, "run-succeeded")
    browser.find_element(By.LINK_TEXT, "Rails").click()
    _at(browser, "/ui/rails")
    everything = browser.find_elements(By.CSS_SELECTOR, ".switches > li")[0]
    everything.find_element(By.NAME, "reason").send_keys("drill: no writes while we look")
    everything.find_element(By.NAME, "confirm").click()
    everything.find_element(By.CSS_SELECTOR, "button").click()
    _wait(browser, "the kill switch for everything is on", reload=False)
    assert "Turned on by oncall" in browser.find_elements(By.CSS_SELECTOR, ".switches > li")[0].text
    screenshot(browser, shots, "rails")


def _see_blocked_and_sign_out(browser: WebDriver, base: str) -> str:
    """The run the switch stopped is listed as blocked; sign out; returns the session cookie for the CSRF check."""
    browser.get(f"{base}/ui/?playbook=console-fix&status=blocked_by_policy")
    _wait(browser, "console-fix")
    cookie = browser.get_cookie("remediate_console")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    browser.find_element(By.CSS_SELECTOR, ".who button").click()
    _at(browser, "/ui/sign-in")
    browser.get(f"{base}/ui/")
    assert browser.current_url.endswith("/ui/sign-in")  # signed out: the session is gone
    return str(cookie["value"])


async def test_an_approver_signs_in_approves_a_waiting_run_and_watches_it_finish(
    temporal_env_address: str, temporal_client: Client, tmp_path: Path
) -> None:
    """In Chromium: the sign-in page refuses the webhook's token and takes an approver's; the waiting run is listed;
    hostile labels render as text and run nothing; Approve is counted under the approver's name and the page shows
    the run succeed without a reload; the kill switch, flipped on the rails page with a reason, ends the next run
    `blocked_by_policy` before it writes; sign-out ends the session. A POST without the CSRF token is refused, and the
    pages carry a CSP without inline script and refuse to be framed."""
    target, queue = RailTarget(), f"console-{uuid.uuid4().hex[:8]}"
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "console.yaml").write_text(_gated_playbook())
    shots = Path(os.environ.get("REMEDIATE_SCREENSHOTS", tmp_path / "screenshots"))
    async with serving(target.app()) as url:
        config = write_config(tmp_path / "c.yaml", url, "one")
        with config.open("a") as extra:
            extra.write("viewer_tokens: {watcher: 'env:VIEWER_TOKEN'}\n")
        settings = env(temporal_env_address, queue, config, books, VIEWER_TOKEN=VIEWER)
        service = start("serve", ["serve"], settings, tmp_path)
        try:
            await service.wait_ready()

            def fire(alert_labels: dict[str, str]) -> None:
                message = webhook_message(alert_labels, uuid.uuid4().hex[:16], datetime.now(UTC).isoformat())
                with httpx2.Client(base_url=service.url, headers=AUTH, timeout=30) as http:
                    assert http.post("/alertmanager", json=message).status_code == 200

            await asyncio.to_thread(fire, labels("c1"))
            browser = await asyncio.to_thread(chromium)
            try:
                await asyncio.to_thread(_viewer_cannot_decide, browser, service.url, shots)
                await asyncio.to_thread(_approve_and_flip, browser, service.url, shots)
                await asyncio.to_thread(fire, labels("c2"))  # the next alert's run meets the switch before it writes
                done = await finished(temporal_client, queue, "console-fix", 2, within=120)
                cookie = await asyncio.to_thread(_see_blocked_and_sign_out, browser, service.url)
            finally:
                await asyncio.to_thread(browser.quit)
            state = next(s for s in done if s.labels["key"] == "c1")
            blocked = next(s for s in done if s.labels["key"] == "c2")
            jar = httpx2.Cookies({"remediate_console": cookie})
            async with httpx2.AsyncClient(base_url=service.url, timeout=30, cookies=jar) as http:
                page = await http.get("/ui/sign-in")
                forged = await http.post(
                    f"/ui/runs/{state.run_id}/decide",
                    content=b"verdict=reject",
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
        finally:
            await service.terminate()
    assert state.status == "succeeded" and target.writes["c1"] == 1
    assert (blocked.status, blocked.limit, target.writes["c2"]) == ("blocked_by_policy", "kill_switch", 0)
    assert state.gate is not None and [(d.user, d.source, d.outcome) for d in state.gate.decisions] == [
        ("oncall", "console", "counted")
    ]
    assert forged.status_code == 403 and "CSRF" in forged.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert (shots / "run-succeeded-phone.png").stat().st_size > 0


def _click_through(browser: WebDriver, target: WebElement) -> None:
    """Click a link or a form's button and wait until the page it leads to has replaced this one (both pages may
    show the same text)."""
    page = browser.find_element(By.TAG_NAME, "html")
    target.click()
    WebDriverWait(browser, 30).until(staleness_of(page))


def _follow(browser: WebDriver, link: str) -> None:
    _click_through(browser, browser.find_element(By.LINK_TEXT, link))


def _seed(dsn: str, n: int) -> None:
    """`n` finished runs of `console-seed` in the audit store, one an hour back from now, every fifth failed."""

    async def write() -> None:
        store = PostgresAuditStore(dsn)
        try:
            for i in range(n):
                status = "failed" if i % 5 == 0 else "succeeded"
                state = RunState(
                    run_id=f"console-seed/fp{i}/{i}",
                    playbook="console-seed",
                    alertname="SeedAlert",
                    fingerprint=f"fp{i}",
                    labels={"alertname": "SeedAlert"},
                    mode=Mode.AUTO,
                    status=status,
                    started_at=datetime.now(UTC) - timedelta(hours=i + 1),
                )
                await store.append(AuditSnapshot(seq=1, state=state, final=True), [])
        finally:
            await store.close()

    asyncio.run(write())


def _page_and_reset(browser: WebDriver, base: str, shots: Path, am_url: str, done_id: str) -> tuple[list[int], str]:
    """Sign in, page through the seeded runs and filter them, then reset the open breaker; returns each page's size."""
    browser.get(f"{base}/ui/sign-in")
    browser.find_element(By.ID, "token").send_keys(ONCALL)
    browser.find_element(By.CSS_SELECTOR, "form button").click()
    _wait(browser, "Sign out", reload=False)
    browser.get(f"{base}/ui/?playbook=console-seed")
    sizes = [len(browser.find_elements(By.CSS_SELECTOR, ".runs > li"))]
    assert "console-seed" in _text(browser) and "← Newest" not in _text(browser)
    while browser.find_elements(By.LINK_TEXT, "Older →"):
        _follow(browser, "Older →")
        sizes.append(len(browser.find_elements(By.CSS_SELECTOR, ".runs > li")))
    screenshot(browser, shots, "runs-last-page")
    _follow(browser, "← Newest")
    assert "← Newest" not in _text(browser) and "Older →" in _text(browser)
    Select(browser.find_element(By.NAME, "status")).select_by_value("failed")
    _click_through(browser, browser.find_element(By.CSS_SELECTOR, ".filters button"))
    assert "status=failed" in browser.current_url
    badges = {b.text for b in browser.find_elements(By.CSS_SELECTOR, ".runs .badge")}
    assert badges == {"failed"}, badges
    screenshot(browser, shots, "runs-filtered")
    browser.get(f"{base}/ui/rails")
    _wait(browser, "OPEN: writes need approval")  # the run's alert kept firing: one ineffective run opens it
    assert "breaker: after 1 ineffective runs in a row, writes need approval" in _text(browser)
    screenshot(browser, shots, "rails-breaker-open")
    breaker = browser.find_element(By.CSS_SELECTOR, ".breakers > li")
    breaker.find_element(By.NAME, "confirm").click()
    _click_through(browser, breaker.find_element(By.CSS_SELECTOR, "button"))
    _wait(browser, "the breaker of console-breaker is reset", reload=False)
    assert "closed" in browser.find_element(By.CSS_SELECTOR, ".breakers > li").text
    browser.get(f"{base}/ui/?playbook=console-breaker")
    browser.get(str(browser.find_element(By.CSS_SELECTOR, ".runs a").get_attribute("href")))
    to_temporal = browser.find_element(By.LINK_TEXT, "in the Temporal UI").get_attribute("href")
    assert to_temporal == f"{TEMPORAL_UI}/namespaces/default/workflows?query=WorkflowId%3D%22{done_id}%22"
    to_alert = str(browser.find_element(By.LINK_TEXT, "in Alertmanager").get_attribute("href"))
    assert to_alert.startswith(f"{am_url}/#/alerts?filter=%7Balertname%3D%22ConsoleBreaker%22%2Ckey%3D%22k1%22%7D")
    screenshot(browser, shots, "run-links")
    for name in ("waiting", "playbooks"):
        browser.get(f"{base}/ui/{name}")
        _wait(browser, "Sign out", reload=False)
        screenshot(browser, shots, name)
    _follow(browser, "Promotion report")  # the first playbook's: none of these runs is a shadow run
    assert "never promotes by itself" in _text(browser) and "not enough evidence yet: 0 run(s)" in _text(browser)
    Select(browser.find_element(By.NAME, "since")).select_by_value("7d")
    _click_through(browser, browser.find_element(By.CSS_SELECTOR, ".filters button"))
    assert "since=7d" in browser.current_url and "Promotion report:" in _text(browser)
    screenshot(browser, shots, "promotion")
    return sizes, to_alert


async def _api_pages(base: str) -> list[list[dict[str, object]]]:
    """GET /api/v1/runs for the seeded playbook, following its `Link: <…>; rel="next"` header to the end."""
    pages: list[list[dict[str, object]]] = []
    url: str | None = "/api/v1/runs?playbook=console-seed&limit=50"
    async with httpx2.AsyncClient(base_url=base, headers=AUTH, timeout=30) as http:
        while url is not None:
            answer = await http.get(url)
            assert answer.status_code == 200, answer.text
            pages.append(answer.json())
            link = answer.headers.get("link")
            url = link.split(">", 1)[0].lstrip("<") if link else None
    return pages


async def test_an_approver_pages_the_audit_store_and_resets_a_breaker_the_alert_opened(
    temporal_env_address: str, temporal_client: Client, postgres: Postgres, tmp_path: Path
) -> None:
    """In Chromium, against `serve` with its audit store in Postgres (migrated by `remediate migrate audit`) and a
    real Alertmanager: 120 recorded runs page 50, 50, 20 by Older/Newest links and filter to the failed ones; a fix
    whose alert keeps firing opens the breaker, the rails page shows it with the limits in words, and a confirmed
    reset closes it, as `remediate breaker status` (a process) then says."""
    target, queue, dsn = RailTarget(), f"console-{uuid.uuid4().hex[:8]}", new_database(postgres)
    books = tmp_path / "playbooks"
    books.mkdir()
    rails = "limits: {breaker: {ineffective: 1}, effective_within: 2s}"
    (books / "breaker.yaml").write_text(playbook("console-breaker", "ConsoleBreaker", rails))
    shots = Path(os.environ.get("REMEDIATE_SCREENSHOTS", tmp_path / "screenshots"))
    migrated = await cli(["migrate", "audit"], {"REMEDIATE_DATABASE_URL": dsn})
    assert migrated.returncode == 0, migrated.stderr
    await asyncio.to_thread(_seed, dsn, 120)
    am = start_alertmanager(tmp_path / "am", "http://127.0.0.1:1/unused", TOKEN)
    try:
        async with serving(target.app()) as url:
            config = write_config(tmp_path / "c.yaml", url, "one", am.url)
            service = start(
                "serve",
                ["serve"],
                env(
                    temporal_env_address,
                    queue,
                    config,
                    books,
                    **{
                        "REMEDIATE_DATABASE_URL": dsn,
                        "REMEDIATE_TEMPORAL_UI_URL": TEMPORAL_UI,
                        "REMEDIATE_ALERTMANAGER_UI_URL": am.url,
                    },
                ),
                tmp_path,
            )
            try:
                await service.wait_ready()
                labels = {"alertname": "ConsoleBreaker", "key": "k1"}
                am.post_alerts([{"labels": labels}])  # firing, and it stays so: the fix is ineffective
                message = webhook_message(labels, uuid.uuid4().hex[:16], datetime.now(UTC).isoformat())
                async with httpx2.AsyncClient(base_url=service.url, headers=AUTH, timeout=30) as http:
                    assert (await http.post("/alertmanager", json=message)).status_code == 200
                done = await finished(temporal_client, queue, "console-breaker", 1, within=60)
                assert done[0].effectiveness == "ineffective" and target.writes["k1"] == 1, done[0]
                browser = await asyncio.to_thread(chromium)
                try:
                    sizes, to_alert = await asyncio.to_thread(
                        _page_and_reset, browser, service.url, shots, am.url, quote(done[0].run_id, safe="")
                    )
                finally:
                    await asyncio.to_thread(browser.quit)
                switch_env = {"REMEDIATE_TEMPORAL_ADDRESS": temporal_env_address, "REMEDIATE_TASK_QUEUE": queue}
                shown = await cli(["breaker", "status", "console-breaker"], switch_env)
                api_pages = await _api_pages(service.url)
                # Debian's Alertmanager ships without its web UI: its API takes the link's matchers instead.
                matchers = unquote(to_alert.split("filter=", 1)[1]).strip("{}").split(",")
                async with httpx2.AsyncClient(timeout=30) as http:
                    found = (await http.get(f"{am.url}/api/v2/alerts", params=[("filter", m) for m in matchers])).json()
            finally:
                await service.terminate()
    finally:
        am.process.stop()
    assert [a["labels"] for a in found] == [{"alertname": "ConsoleBreaker", "key": "k1"}], found
    assert sizes == [50, 50, 20] and [len(p) for p in api_pages] == [50, 50, 20]
    listed = [r["run_id"] for page in api_pages for r in page]
    assert len(set(listed)) == 120 and listed[0] == "console-seed/fp0/0" and listed[-1] == "console-seed/fp119/119"
    assert "console-breaker: breaker closed" in shown.stdout, shown.stdout
