"""The operator console in headless Chromium against `remediate serve` as a process: sign in, approve, sign out."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import httpx2
from selenium.common.exceptions import (
    NoAlertPresentException,
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from temporalio.client import Client

from tests.support.browser import chromium, screenshot
from tests.support.crash import webhook_message
from tests.support.deployment import AUTH, ONCALL, TOKEN, env, finished, write_config
from tests.support.processes import start
from tests.support.rail_target import PLAYBOOK, RailTarget
from tests.support.servers import serving

T = TypeVar("T")
HOSTILE = '<img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script>'
LINK = "javascript:document.title='pwned'"


def _gated_playbook() -> str:
    """The rail target's one-read, one-write playbook, its write behind an approval by `oncall`."""
    return PLAYBOOK.format(name="console-fix", alertname="ConsoleFix", extra="approvers: [oncall]").replace(
        "    approval: none\n", ""
    )


def _text(browser: WebDriver) -> str:
    """The page's text, or nothing while a navigation or a refresh of the story replaces it."""
    try:
        return str(browser.find_element(By.TAG_NAME, "body").text)
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def _steady(act: Callable[[], T]) -> T:
    """Do `act` again if the story it touches was replaced meanwhile (a run in progress refreshes its story)."""
    for _ in range(20):
        try:
            return act()
        except (NoSuchElementException, StaleElementReferenceException):
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
        settings = env(temporal_env_address, queue, write_config(tmp_path / "c.yaml", url, "one"), books)
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
