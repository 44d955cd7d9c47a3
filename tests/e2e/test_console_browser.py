"""The operator console in headless Chromium against `remediate serve` as a process: sign in, approve, sign out."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx2
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from temporalio.client import Client

from tests.support.browser import chromium, screenshot
from tests.support.crash import webhook_message
from tests.support.deployment import AUTH, ONCALL, TOKEN, env, finished, write_config
from tests.support.processes import start
from tests.support.rail_target import PLAYBOOK, RailTarget
from tests.support.servers import serving

HOSTILE = '<img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script>'
LINK = "javascript:document.title='pwned'"


def _gated_playbook() -> str:
    """The rail target's one-read, one-write playbook, its write behind an approval by `oncall`."""
    return PLAYBOOK.format(name="console-fix", alertname="ConsoleFix", extra="approvers: [oncall]").replace(
        "    approval: none\n", ""
    )


def _wait(browser: WebDriver, seen: str, within: float = 60, reload: bool = True) -> None:
    """Until the page's text shows `seen` (reloading between looks unless the page refreshes itself)."""
    deadline = time.monotonic() + within
    while seen not in browser.find_element(By.TAG_NAME, "body").text:
        if time.monotonic() > deadline:
            raise AssertionError(f"never saw {seen!r}: {browser.find_element(By.TAG_NAME, 'body').text[:2000]}")
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


def _walk(base: str, shots: Path) -> str:
    """What an approver does, in the browser; returns the session cookie for the CSRF check."""
    browser = chromium()
    try:
        browser.get(f"{base}/ui/")
        assert browser.current_url.endswith("/ui/sign-in")  # no session: the sign-in page only
        screenshot(browser, shots, "sign-in")
        browser.find_element(By.ID, "token").send_keys(TOKEN)  # the webhook's token is no approver's
        browser.find_element(By.CSS_SELECTOR, "form button").click()
        assert "not an approver's token" in browser.find_element(By.CSS_SELECTOR, ".error").text
        browser.find_element(By.ID, "token").send_keys(ONCALL)
        browser.find_element(By.CSS_SELECTOR, "form button").click()
        _wait(browser, "awaiting_approval")
        screenshot(browser, shots, "runs")
        browser.find_element(By.PARTIAL_LINK_TEXT, "console-fix").click()
        _wait(browser, "Approve", reload=True)
        labels = browser.find_element(By.CSS_SELECTOR, ".labels").text
        assert HOSTILE in labels and LINK in labels  # shown as text, exactly as the alert sent them
        assert not browser.find_elements(By.CSS_SELECTOR, ".labels img, .labels script, .labels a")
        _no_script_ran(browser)
        screenshot(browser, shots, "run-waiting")
        browser.find_element(By.ID, "comment").send_keys("checked the queue, go")
        browser.find_element(By.CSS_SELECTOR, "button.approve").click()
        _wait(browser, "Your decision: counted", reload=False)
        _wait(browser, "succeeded", reload=False)  # the page refreshes its own story as the run goes on
        assert "oncall (console): approve, counted" in browser.find_element(By.ID, "story").text
        _no_script_ran(browser)
        screenshot(browser, shots, "run-succeeded")
        cookie = browser.get_cookie("remediate_console")
        assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        browser.find_element(By.CSS_SELECTOR, ".who button").click()
        assert browser.current_url.endswith("/ui/sign-in")
        browser.get(f"{base}/ui/")
        assert browser.current_url.endswith("/ui/sign-in")  # signed out: the session is gone
        return str(cookie["value"])
    finally:
        browser.quit()


async def test_an_approver_signs_in_approves_a_waiting_run_and_watches_it_finish(
    temporal_env_address: str, temporal_client: Client, tmp_path: Path
) -> None:
    """In Chromium: the sign-in page refuses the webhook's token and takes an approver's; the waiting run is listed;
    hostile labels render as text and run nothing; Approve is counted under the approver's name and the page shows
    the run succeed without a reload; sign-out ends the session. A POST without the CSRF token is refused, and the
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
            labels = {"alertname": "ConsoleFix", "key": "c1", "evil": HOSTILE, "link": LINK}
            message = webhook_message(labels, uuid.uuid4().hex[:16], datetime.now(UTC).isoformat())
            async with httpx2.AsyncClient(base_url=service.url, headers=AUTH, timeout=30) as http:
                assert (await http.post("/alertmanager", json=message)).status_code == 200
            cookie = await asyncio.to_thread(_walk, service.url, shots)
            [state] = await finished(temporal_client, queue, "console-fix", 1)
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
    assert state.gate is not None and [(d.user, d.source, d.outcome) for d in state.gate.decisions] == [
        ("oncall", "console", "counted")
    ]
    assert forged.status_code == 403 and "CSRF" in forged.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert (shots / "run-succeeded-phone.png").stat().st_size > 0
