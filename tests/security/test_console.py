"""The console's rails in-process: sessions that cannot be forged or outlive their hours, CSRF on every POST, hostile
values as text, decisions under the signed-in identity with the gate's own answer shown, and the list's filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pytest
from freezegun import freeze_time
from itsdangerous import URLSafeTimedSerializer
from starlette.applications import Starlette
from starlette.testclient import TestClient

from service.app.compose import governance
from service.config import Settings
from service.config_file import ConfigFile
from service.playbooks.catalog import Catalog
from service.playbooks.loader import load_versioned
from service.playbooks.playbook import Playbook, PlaybookVersion
from service.rails.governance import Governance, GovernorView, Switch, SwitchChange
from service.rails.governor_state import GovernorState, Limits, PlaybookState
from service.rails.kill_switch import SwitchBoard
from service.runs.listing import RunCursor, RunQuery, RunsPage, RunSummary
from service.runs.state import RunState, StepRecord
from service.temporal.client import TemporalRuns
from service.vocabulary.approvals import Decision, DecisionRecord
from service.vocabulary.errors import ConfigError, PlaybookError, Problem, RunNotOpen
from service.vocabulary.modes import Mode
from service.web.console import console_routes
from service.web.console_pages import Pages
from service.web.console_rails import rail_console_routes
from service.web.credentials import ApproverTokens
from service.web.run_links import RunLinks
from service.web.sessions import COOKIE, Sessions, session_key
from tests.support.gates import gate
from tests.support.paths import DATA

ALICE, BOB, VIEWER = "alice-approver-token-0001", "bob-approver-token-00002", "noc-screen-viewer-token-3"
EVIL = '<img src=x onerror="alert(1)">'
NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)
RAILS = Governance(
    limits=Limits.model_validate(
        {
            "cooldown": "10m",
            "max_concurrent": 2,
            "breaker": {"ineffective": 3},
            "storm": {"occurrences": 20, "within": "5m"},
        }
    ),
    alertmanager="am",
    max_writes_per_hour=50,
)


def _state(run_id: str, approvers: list[str], status: str = "awaiting_approval") -> RunState:
    return RunState(
        run_id=run_id,
        playbook="p",
        alertname="A",
        fingerprint="f",
        labels={"alertname": "A", "evil": EVIL},
        mode=Mode.AUTO,
        status=status,
        reason=f"because {EVIL}",
        steps=[StepRecord(id="fix", phase="act", action="http.request", effect="write", connection="t")],
        gate=gate(run_id=run_id, approvers=approvers, expires_at=NOW + timedelta(minutes=15)),
    )


class Runs(TemporalRuns):
    """Two runs: `p/open/1` waits on U_ALICE, `p/done/1` has ended; decisions go through the gate's own rules."""

    def __init__(self) -> None:
        self.states = {"p/open/1": _state("p/open/1", ["U_ALICE"]), "p/done/1": _state("p/done/1", [], "succeeded")}
        self.decided: list[Decision] = []

    async def list(self, query: RunQuery) -> RunsPage:
        return RunsPage(
            [
                RunSummary(
                    run_id=r,
                    status=s.status,
                    playbook=s.playbook,
                    alertname=s.alertname,
                    mode="auto",
                    started=NOW,
                    closed=None,
                )
                for r, s in self.states.items()
                if query.playbook in (None, s.playbook) and query.status in (None, s.status)
            ]
        )

    async def state(self, run_id: str, query_timeout: Any = None) -> RunState | None:
        return self.states.get(run_id)

    async def decide(self, run_id: str, decision: Decision) -> None:
        state = self.states[run_id]
        if state.status == "succeeded":
            raise RunNotOpen(f"run {run_id} has ended")
        assert state.gate is not None
        self.decided.append(decision)
        state.gate.apply(decision, NOW)

    async def decision(self, run_id: str, decision_id: str, within: float = 3.0) -> DecisionRecord | None:
        gate = self.states[run_id].gate
        return next((d for d in gate.decisions if d.decision_id == decision_id), None) if gate else None


class Switchboard:
    """The kill switch board, kept in memory as the governor would hold it; every change recorded."""

    def __init__(self) -> None:
        self.state, self.changes, self.reset = SwitchBoard(), list[SwitchChange](), list[str]()

    async def set_switch(self, change: SwitchChange) -> Switch:
        self.changes.append(change)
        self.state = self.state.flipped(change, NOW)
        return self.state.playbooks[change.playbook] if change.playbook else self.state.everything

    async def board(self) -> SwitchBoard:
        return self.state

    async def view(self, playbook: str) -> GovernorView:
        breaker = PlaybookState(ineffective_in_a_row=0 if self.reset else 3, breaker_open=not self.reset)
        return GovernorView(state=GovernorState(playbooks={playbook: breaker}), started=True)

    async def reset_breaker(self, playbook: str) -> None:
        self.reset.append(playbook)


def console(
    runs: Runs | None = None, switches: Switchboard | None = None, links: RunLinks | None = None
) -> tuple[TestClient, Runs]:
    runs = runs or Runs()
    pages = Pages(Sessions(ApproverTokens({ALICE: "U_ALICE", BOB: "U_BOB"})))
    routes = console_routes(runs, pages, links=links) + rail_console_routes(
        switches or Switchboard(), pages, lambda: {"p": RAILS}
    )
    return TestClient(Starlette(routes=routes), base_url="http://127.0.0.1"), runs


def signed_in(http: TestClient, token: str = ALICE) -> str:
    """Sign in; the CSRF token of the session, as the page's forms carry it."""
    answer = http.post("/ui/sign-in", data={"token": token}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    page = http.get("/ui/runs/p%2Fopen%2F1")
    return page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def test_without_a_session_every_page_is_the_sign_in_page() -> None:
    """No cookie, a forged one, or one signed under other tokens: the console sends you to sign in."""
    http, _ = console()
    elsewhere = URLSafeTimedSerializer(session_key(ApproverTokens({"x": "U_X"})), salt="console")
    for cookie in (None, "forged", elsewhere.dumps({"who": "U_ALICE", "csrf": "c"})):
        if cookie:
            http.cookies.set(COOKIE, cookie, path="/ui")
        answer = http.get("/ui/", follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/sign-in"


def test_a_sign_in_posted_from_another_site_is_refused() -> None:
    """A sign-in form posted from another origin (login CSRF) sets no cookie; one from the console's own page does,
    directly or through a proxy that names the host it was asked for."""
    http, _ = console()
    for origin in ("https://evil.example", "null", "http://127.0.0.1.evil.example"):
        answer = http.post("/ui/sign-in", data={"token": ALICE}, headers={"Origin": origin}, follow_redirects=False)
        assert answer.status_code == 403 and "set-cookie" not in answer.headers, origin
    own = http.post(
        "/ui/sign-in", data={"token": ALICE}, headers={"Origin": "http://127.0.0.1"}, follow_redirects=False
    )
    assert own.status_code == 303 and "set-cookie" in own.headers
    proxied = {"Origin": "https://remediate.example", "X-Forwarded-Host": "remediate.example"}
    assert http.post("/ui/sign-in", data={"token": ALICE}, headers=proxied, follow_redirects=False).status_code == 303


def test_a_session_ends_after_its_hours() -> None:
    """Signed in at noon, the cookie is refused thirteen hours later (sessions last twelve)."""
    http, _ = console()
    with freeze_time(NOW) as clock:
        signed_in(http)
        assert http.get("/ui/", follow_redirects=False).status_code == 200
        clock.tick(timedelta(hours=13))
        assert http.get("/ui/", follow_redirects=False).status_code == 303


def test_the_cookie_is_secure_behind_an_https_proxy() -> None:
    """Reached through a proxy that says HTTPS, the session cookie is Secure as well as HttpOnly and SameSite=Strict."""
    http, _ = console()
    answer = http.post(
        "/ui/sign-in", data={"token": ALICE}, headers={"X-Forwarded-Proto": "https"}, follow_redirects=False
    )
    cookie = answer.headers["set-cookie"].lower()
    assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie


def test_a_decision_is_the_signed_in_persons_and_the_page_shows_how_the_gate_took_it() -> None:
    """Alice approves as U_ALICE from the console; Bob, signed in, sees no buttons, and a POST he makes anyway is
    refused by the gate with its reason; a POST without the CSRF token decides nothing; an ended run answers 409."""
    http, runs = console()
    csrf = signed_in(http, BOB)
    assert "Approve" not in http.get("/ui/runs/p%2Fopen%2F1").text  # not an approver of this run
    said = http.post("/ui/runs/p/open/1/decide", data={"verdict": "approve", "csrf": csrf})
    assert "refused: U_BOB is not an approver for this run" in said.text
    http.cookies.clear()
    csrf = signed_in(http, ALICE)
    assert http.post("/ui/runs/p/open/1/decide", data={"verdict": "approve"}).status_code == 403
    said = http.post("/ui/runs/p/open/1/decide", data={"verdict": "approve", "csrf": csrf, "comment": "ok"})
    assert "Your decision: counted: 1 of 1 approval(s)" in said.text
    assert [(d.user, d.source, d.verdict, d.comment) for d in runs.decided] == [
        ("U_BOB", "console", "approve", ""),
        ("U_ALICE", "console", "approve", "ok"),
    ]
    assert http.post("/ui/runs/p/done/1/decide", data={"verdict": "reject", "csrf": csrf}).status_code == 409


def test_hostile_values_are_text_and_the_list_filters() -> None:
    """A label and a reason holding markup come back escaped; the status and playbook filters keep only matching
    runs."""
    http, _ = console()
    signed_in(http)
    page = http.get("/ui/runs/p%2Fopen%2F1").text
    assert EVIL not in page and "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in page
    listed = http.get("/ui/", params={"status": "succeeded"}).text
    assert "p/done/1" not in listed  # ids are shown short; the link carries the id
    assert "p%2Fdone%2F1" in listed and "p%2Fopen%2F1" not in listed
    assert "No runs match" in http.get("/ui/", params={"playbook": "other"}).text


def test_hostile_filters_and_page_links_are_refused_with_a_reason_never_a_500() -> None:
    """A status that is not one, control characters, a 10 kB filter, a span too large for a date and a forged page
    link each get a 400 that says which; a well-formed link naming no run is only a position."""
    http, _ = console()
    signed_in(http)
    for params, reason in (
        ({"status": "<script>"}, "status must be one of"),
        ({"playbook": "a\x00b"}, "playbook holds control characters"),
        ({"alert": "x" * 10_000}, "alert is longer than 200 characters"),
        ({"since": "99999999999999d"}, "give a span"),
        ({"since": "yesterday"}, "give a span"),
        ({"before": "not-a-cursor"}, "page link"),
        ({"before": "x" * 5000}, "page link is too long"),
    ):
        answer = http.get("/ui/", params=params)
        assert answer.status_code == 400 and reason in answer.text, (params, answer.text[:300])
        assert "<script>" not in answer.text
    position = RunCursor(NOW, "z/z/z").token()
    assert http.get("/ui/", params={"before": position, "status": "succeeded"}).status_code == 200


def test_a_run_links_to_its_workflow_and_its_alert_with_hostile_labels_quoted() -> None:
    """With both UIs configured, the run page links to the Temporal UI's workflow list narrowed to the run's id and to
    Alertmanager's alerts filtered by the run's labels, each value quoted so markup in a label stays data."""
    http, _ = console(links=RunLinks("http://temporal-ui:8080/", "prod", "http://am:9093"))
    signed_in(http)
    page = http.get("/ui/runs/p%2Fopen%2F1").text
    assert 'href="http://temporal-ui:8080/namespaces/prod/workflows?query=WorkflowId%3D%22p%2Fopen%2F1%22"' in page
    alert = page.split('href="http://am:9093/#/alerts?filter=', 1)[1].split('"', 1)[0]
    assert unquote(alert).startswith('{alertname="A",evil="<img src=x onerror=\\"alert(1)\\">"')
    assert "<img" not in alert and EVIL not in page
    unlinked, _ = console()
    signed_in(unlinked)
    assert "in the Temporal UI" not in unlinked.get("/ui/runs/p%2Fopen%2F1").text


def test_assets_are_served_by_content_hash_and_long_cached() -> None:
    """The page names its stylesheet and script by content hash; each is served immutable, anything else 404."""
    http, _ = console()
    page = http.get("/ui/sign-in").text
    css = page.split('href="', 1)[1].split('"', 1)[0]
    assert css.startswith("/ui/static/console.") and css.endswith(".css")
    answer = http.get(css)
    assert answer.status_code == 200 and "immutable" in answer.headers["cache-control"]
    assert http.get("/ui/static/console.css").status_code == 404


def test_the_kill_switch_flips_only_with_a_reason_and_a_confirmation_under_your_name() -> None:
    """No reason or no confirmation: refused and nothing flips; with both, the switch for one playbook turns on as
    U_ALICE with the reason typed; an unknown playbook or a POST without CSRF flips nothing."""
    switches = Switchboard()
    http, _ = console(switches=switches)
    csrf = signed_in(http)
    form = {"csrf": csrf, "playbook": "p", "on": "on", "reason": "drill", "confirm": "yes"}
    assert http.post("/ui/rails/kill-switch", data={**form, "confirm": ""}).status_code == 400
    assert http.post("/ui/rails/kill-switch", data={**form, "reason": "  "}).status_code == 400
    assert http.post("/ui/rails/kill-switch", data={**form, "playbook": "nope"}).status_code == 400
    assert http.post("/ui/rails/kill-switch", data={k: v for k, v in form.items() if k != "csrf"}).status_code == 403
    assert switches.changes == []
    page = http.post("/ui/rails/kill-switch", data=form)
    assert "the kill switch for p is on" in page.text and "Turned on by U_ALICE" in page.text
    assert [(c.on, c.by, c.reason, c.playbook) for c in switches.changes] == [(True, "U_ALICE", "drill", "p")]


def test_waiting_for_you_lists_only_the_gates_you_may_decide() -> None:
    """Alice, an approver of the open run, finds it with its Approve button; Bob, who is not, finds nothing."""
    http, _ = console()
    signed_in(http, ALICE)
    page = http.get("/ui/waiting").text
    assert "p%2Fopen%2F1" in page and "Approve" in page and "p%2Fdone%2F1" not in page
    http.cookies.clear()
    signed_in(http, BOB)
    assert "Nothing waits on you." in http.get("/ui/waiting").text


def test_a_viewer_reads_everything_and_decides_nothing() -> None:
    """Signed in with a viewer token: the waiting run shows no buttons; a decision, a flip or a breaker reset POSTed
    anyway is refused (403) and reaches neither the run nor the governor."""
    runs, switches = Runs(), Switchboard()
    pages = Pages(Sessions(ApproverTokens({ALICE: "U_ALICE"}), ApproverTokens({VIEWER: "U_ALICE"})))
    routes = console_routes(runs, pages) + rail_console_routes(switches, pages, lambda: {"p": RAILS})
    http = TestClient(Starlette(routes=routes), base_url="http://127.0.0.1")
    csrf = signed_in(http, VIEWER)
    page = http.get("/ui/runs/p%2Fopen%2F1").text
    assert "U_ALICE (viewer)" in page and "Approve" not in page
    assert http.post("/ui/runs/p/open/1/decide", data={"verdict": "approve", "csrf": csrf}).status_code == 403
    assert 'name="reason"' not in http.get("/ui/rails").text
    flip = {"csrf": csrf, "on": "on", "reason": "r", "confirm": "yes"}
    assert http.post("/ui/rails/kill-switch", data=flip).status_code == 403
    assert http.post("/ui/rails/breaker", data={"csrf": csrf, "playbook": "p", "confirm": "yes"}).status_code == 403
    assert runs.decided == [] and switches.changes == [] and switches.reset == []


def test_a_viewer_token_is_long_and_nobody_elses(monkeypatch: pytest.MonkeyPatch) -> None:
    """A viewer token shorter than 16 characters, or equal to an approver's token, stops start-up with the reason."""
    monkeypatch.setenv("A_TOKEN", ALICE)
    monkeypatch.setenv("SHORT", "short")
    same = ConfigFile(approver_tokens={"U_ALICE": "env:A_TOKEN"}, viewer_tokens={"noc": "env:A_TOKEN"})
    with pytest.raises(ConfigError, match="also someone else's token"):
        same.viewer_identities()
    with pytest.raises(ConfigError, match="shorter than 16"):
        ConfigFile(viewer_tokens={"noc": "env:SHORT"}).viewer_identities()
    assert ConfigFile(viewer_tokens={"noc": "env:A_TOKEN"}).viewer_identities() == {ALICE: "noc"}


def test_an_open_breaker_is_shown_and_reset_only_when_confirmed() -> None:
    """The rails page shows p's open breaker and its streak; a reset without the confirmation is refused, with it the
    governor is told and the page shows the breaker closed."""
    switches = Switchboard()
    http, _ = console(switches=switches)
    csrf = signed_in(http)
    page = http.get("/ui/rails").text
    assert "OPEN: writes need approval" in page and "3 ineffective run(s) in a row" in page
    assert http.post("/ui/rails/breaker", data={"csrf": csrf, "playbook": "p"}).status_code == 400
    done = http.post("/ui/rails/breaker", data={"csrf": csrf, "playbook": "p", "confirm": "yes"})
    assert "the breaker of p is reset" in done.text and "closed" in done.text and switches.reset == ["p"]


def test_the_rails_page_says_each_playbooks_limits_in_words() -> None:
    """p's limits over the service defaults read as sentences: cooldown, concurrency, what happens over a limit, the
    storm and breaker thresholds, effectiveness and the service-wide write budget."""
    http, _ = console()
    signed_in(http)
    page = http.get("/ui/rails").text
    for line in (
        "one run per 10m for each alert (by its fingerprint)",
        "at most 2 writing at once",
        "over a limit: wait for a turn",
        "storm: over 20 new alerts in 5m, writes need approval",
        "breaker: after 3 ineffective runs in a row, writes need approval",
        "effective if the alert stops firing within 10m",
        "service-wide: at most 50 writes an hour",
    ):
        assert line in page, line


def test_the_playbooks_page_outlines_each_playbook_and_a_refused_reload() -> None:
    """stuck-jobs is shown with its file and hash, its match, its steps in order with the write marked, its limits,
    its last runs with their outcomes and a link to all of them; a reload that was refused shows its
    `file:line:col` problems while the old set runs."""
    loaded = load_versioned([DATA / "playbooks"])

    def broken() -> list[tuple[Playbook, PlaybookVersion]]:
        raise PlaybookError([Problem("playbooks/bad.yaml", 3, 1, "match needs an alertname")])

    catalog = Catalog(loaded, broken)
    assert catalog.reload() == ["playbooks/bad.yaml:3:1: match needs an alertname"]
    pages = Pages(Sessions(ApproverTokens({ALICE: "U_ALICE"})))
    runs = Runs()
    runs.states["stuck-jobs/fp/1"] = _state("stuck-jobs/fp/1", [], "failed").model_copy(
        update={"playbook": "stuck-jobs"}
    )
    terms = governance(Settings(), ConfigFile())  # as `serve` composes each playbook's rails
    routes = console_routes(runs, pages, catalog, rails=lambda: {book.name: terms(book) for book, _ in loaded})
    http = TestClient(Starlette(routes=routes), base_url="http://127.0.0.1")
    signed_in(http)
    page = http.get("/ui/playbooks").text
    assert 'href="/ui/runs/stuck-jobs%2Ffp%2F1" title="stuck-jobs/fp/1"><span class="badge s-failed">failed' in page
    assert "stuck-jobs" in page and loaded[0][1].sha256[:12] in page and "alertname=JobsStuck" in page
    assert page.index("diagnose · <strong>stuck</strong>") < page.index("act · <strong>requeue</strong>")
    assert "postgres.execute on jobs-db · write" in page and "requests expire after 15m" in page
    assert "one run per 10m for each value of its cooldown key" in page and "at most 30 runs that write an hour" in page
    assert 'href="/ui/?playbook=stuck-jobs"' in page
    assert "playbooks/bad.yaml:3:1: match needs an alertname" in page
