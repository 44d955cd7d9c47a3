"""The rails as deployed: `remediate serve` replicas, the `remediate kill-switch` and `breaker` commands as
processes, a real Alertmanager; every write is counted at its target."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
from temporalio.client import Client

from service.temporal.governor.client import GovernorClient
from service.vocabulary.errors import TemporalUnavailable
from tests.support.crash import webhook_message
from tests.support.deployment import AUTH, ONCALL, TOKEN, alert, cli, finished, many, replicas, states, until
from tests.support.fake_slack import FakeSlack
from tests.support.rail_target import RailTarget, playbook
from tests.support.servers import serving, start_alertmanager

TRIALS = 20


async def test_kill_switch_stops_runs_in_flight_on_every_replica_within_five_seconds(
    temporal_env_address: str, temporal_client: Client, tmp_path: Path
) -> None:
    """Runs held mid-diagnosis on two `serve` replicas; `remediate kill-switch on` (a process) is refused by every
    one of them: 20 trials, no write at the target, and each refusal at most 5 s after the switch was set (the
    command's own time, mostly Python starting on a busy machine, is printed beside it and measured in tests/bench)."""
    target, queue = RailTarget(), f"kill-{uuid.uuid4().hex[:8]}"
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "drill.yaml").write_text(playbook("kill-drill", "KillDrill"))
    async with (
        serving(target.app()) as url,
        replicas(tmp_path, temporal_env_address, queue, [("a", ["serve"], "a"), ("b", ["serve"], "b")], books, url) as (
            a,
            b,
        ),
    ):
        try:
            switch_env = {"REMEDIATE_TEMPORAL_ADDRESS": temporal_env_address, "REMEDIATE_TASK_QUEUE": queue}
            rows: list[tuple[int, float, float, dict[str, float]]] = []
            total = 0
            async with httpx2.AsyncClient(headers=AUTH, timeout=30) as http:
                for trial in range(TRIALS):
                    target.checks_open.clear()
                    keys: list[str] = []
                    while set(target.checks[k] for k in keys if k in target.checks) != {"a", "b"}:
                        # A message's runs start on the worker that ran its delivery (eager start), and Temporal
                        # hands deliveries to the workers in turn: a few messages reach both replicas.
                        pair = [f"t{trial}-{len(keys)}", f"t{trial}-{len(keys) + 1}"]
                        keys += pair
                        replica = (a, b)[len(keys) // 2 % 2]
                        assert (await http.post(f"{replica.url}/alertmanager", json=many("KillDrill", pair))).is_success
                        await asyncio.sleep(0.3)
                        assert len(keys) < 20, f"trial {trial}: runs did not reach both replicas: {target.checks}"
                    await until(lambda: all(k in target.checks for k in keys))  # noqa: B023 - awaited right here
                    total += len(keys)
                    at = datetime.now(UTC)
                    flipped = await cli(
                        ["kill-switch", "on", "--reason", f"trial {trial}", "--as", "drill"], switch_env
                    )
                    assert flipped.returncode == 0, flipped.stderr
                    command = (datetime.now(UTC) - at).total_seconds()
                    board = (await http.get(f"{a.url}/api/v1/kill-switch")).json()["everything"]
                    assert board["on"] and board["at"], board
                    set_at = datetime.fromisoformat(board["at"])
                    target.checks_open.set()
                    done = await finished(temporal_client, queue, "kill-drill", total)
                    latest: dict[str, float] = {}
                    for state in done:
                        key = state.labels["key"]
                        if key not in keys:
                            continue
                        assert state.status == "blocked_by_policy" and state.limit == "kill_switch", state.reason
                        assert state.finished_at is not None
                        seconds = (state.finished_at - set_at).total_seconds()
                        where = target.checks[key]
                        latest[where] = max(latest.get(where, 0.0), seconds)
                    rows.append((trial, command, max(latest.values()), {k: latest[k] for k in sorted(latest)}))
                    # Off again through the other interface: PUT on one replica, as an approver.
                    off = await http.put(
                        f"{(a, b)[trial % 2].url}/api/v1/kill-switch",
                        json={"on": False, "reason": "next trial"},
                        headers={"Authorization": f"Bearer {ONCALL}"},
                    )
                    assert off.status_code == 200 and off.json()["by"] == "oncall", off.text
                shown = (await http.get(f"{b.url}/api/v1/kill-switch")).json()["everything"]
                assert not shown["on"] and shown["by"] == "oncall" and shown["reason"] == "next trial", shown
                assert (await cli(["kill-switch", "on", "--reason", "gauge"], switch_env)).returncode == 0
                gauge = 'remediate_kill_switch{scope="everything"} 1.0'
                for replica in (a, b):  # every replica's gauge shows it within its 5 s refresh
                    deadline = time.monotonic() + 8
                    while gauge not in (await http.get(f"{replica.url}/metrics")).text:
                        assert time.monotonic() < deadline, f"{replica.name}: kill switch gauge not 1"
                        await asyncio.sleep(0.2)
                assert (await cli(["kill-switch", "off", "--as", "drill"], switch_env)).returncode == 0
                status = await cli(["kill-switch", "status"], switch_env)
                assert "kill switch for everything: off, set by drill" in status.stdout, status.stdout
                assert (await http.put(f"{a.url}/api/v1/kill-switch", json={"on": True})).status_code == 403
                metrics = (await http.get(f"{a.url}/metrics")).text + (await http.get(f"{b.url}/metrics")).text
        finally:
            target.checks_open.set()  # a failed trial must not leave runs parked through the teardown

    assert sum(target.writes.values()) == 0, target.writes
    assert 'remediate_policy_refusals_total{playbook="kill-drill",reason="kill_switch"}' in metrics
    worst = max(r[2] for r in rows)
    print("\ntrial | command s | refused on a, b (s after the switch was set)")
    for trial, command, _, per in rows:
        print(f"{trial:5d} | {command:9.2f} | " + ", ".join(f"{k}: {v:.2f}" for k, v in per.items()))
    print(f"max {worst:.2f} s, median {statistics.median(r[2] for r in rows):.2f} s over {len(rows)} trials")
    assert all(set(r[3]) == {"a", "b"} for r in rows)
    assert worst <= 5.0


async def test_cooldown_and_a_thousand_alert_storm_through_split_replicas(
    temporal_env_address: str, temporal_client: Client, tmp_path: Path
) -> None:
    """`serve --web-only` + `serve --worker-only`: a cooldown per key holds (same key blocked, another key writes);
    1,000 alerts trip the storm limit within 30 s, and no more writes happen than the hourly limit allows."""
    target, queue = RailTarget(), f"storm-{uuid.uuid4().hex[:8]}"
    books = tmp_path / "playbooks"
    books.mkdir()
    cooldown = 'limits: {cooldown: 30m, cooldown_key: "{{ inputs.key }}"}'
    (books / "cooldown.yaml").write_text(playbook("cooldown-drill", "CooldownDrill", cooldown))
    storm = "limits: {storm: {occurrences: 20, within: 5m}, max_runs_per_hour: 10, on_limit: refuse}"
    (books / "storm.yaml").write_text(playbook("storm-drill", "StormDrill", storm))
    shapes = [("web", ["serve", "--web-only"], "web"), ("worker", ["serve", "--worker-only"], "worker")]
    slack = FakeSlack()
    async with (
        serving(target.app()) as url,
        serving(slack.app()) as slack_url,
        replicas(
            tmp_path,
            temporal_env_address,
            queue,
            shapes,
            books,
            url,
            None,
            False,
            REMEDIATE_INTAKE_WITHIN="20",
            SLACK_BOT_TOKEN="xoxb-test",
            REMEDIATE_SLACK_CHANNEL="C1",
            REMEDIATE_SLACK_API_URL=f"{slack_url}/api",
        ) as (web, _),
        httpx2.AsyncClient(base_url=web.url, headers=AUTH, timeout=60) as http,
    ):
        for key in ("k1", "k1", "k2"):
            assert (await http.post("/alertmanager", json=alert("CooldownDrill", key))).is_success
            await finished(temporal_client, queue, "cooldown-drill", 1 + ["k1", "k1", "k2"].index(key))
        cooled = await states(temporal_client, queue, "cooldown-drill")
        assert sorted((s.labels["key"], s.status, s.limit) for s in cooled) == [
            ("k1", "blocked_by_policy", "cooldown"),
            ("k1", "succeeded", ""),
            ("k2", "succeeded", ""),
        ]
        assert dict(target.writes) == {"k1": 1, "k2": 1}

        governor, began = GovernorClient(temporal_client, queue), time.monotonic()
        keys = [f"s{i}" for i in range(1000)]
        messages = [many("StormDrill", keys[i : i + 50]) for i in range(0, 1000, 50)]
        lanes = asyncio.Semaphore(2)

        async def deliver(message: dict[str, object]) -> int:
            """As Alertmanager delivers: a few messages at a time, each sent again after a 503 until it is taken."""
            async with lanes:
                for _ in range(30):
                    answer = await http.post("/alertmanager", json=message)
                    if answer.status_code != 503:
                        return answer.status_code
                    await asyncio.sleep(1)
            return 503

        sent = asyncio.gather(*(deliver(m) for m in messages))
        tripped_after = None
        while tripped_after is None and time.monotonic() - began < 60:
            try:
                view = await governor.view("storm-drill")
            except TemporalUnavailable:  # the worker is busy with the storm: its query waits its turn
                continue
            if view.state.playbooks.get("storm-drill") and view.state.playbooks["storm-drill"].storming:
                tripped_after = time.monotonic() - began
            await asyncio.sleep(0.2)
        assert set(await sent) == {200}
        assert tripped_after is not None, "the storm never tripped"
        done = await finished(temporal_client, queue, "storm-drill", 1000, within=300)
    storm_writes = sum(n for k, n in target.writes.items() if k.startswith("s"))
    by_limit: dict[str, int] = {}
    for state in done:
        by_limit[f"{state.status}:{state.limit}"] = by_limit.get(f"{state.status}:{state.limit}", 0) + 1
    print(f"\nstorm tripped {tripped_after:.1f} s after the first message; {storm_writes} write(s); {by_limit}")
    assert storm_writes <= 10 and max(target.writes.values()) == 1
    assert by_limit.get("succeeded:", 0) == storm_writes
    assert set(by_limit) <= {"succeeded:", "blocked_by_policy:storm", "blocked_by_policy:max_runs_per_hour"}
    storms = [m["text"] for m in slack.messages("chat.postMessage") if "Alert storm" in m["text"]]
    assert storms == [storms[0]] and "playbook storm-drill: more than 20 new occurrences" in storms[0], storms


async def test_ineffective_runs_open_the_breaker_and_silences_last_only_while_a_run_acts(
    temporal_env_address: str, temporal_client: Client, tmp_path: Path
) -> None:
    """Through a real Alertmanager: three fixes whose alert keeps firing open the breaker (one Slack message, the
    fourth run blocked, `remediate breaker reset` closes it); each run's silence exists while it acts and is
    expired when it ends, at once when it failed; an alert that resolves makes a run effective."""
    target, slack, queue = RailTarget(), FakeSlack(), f"brk-{uuid.uuid4().hex[:8]}"
    books = tmp_path / "playbooks"
    books.mkdir()
    rails = "limits: {breaker: {ineffective: 3}, effective_within: 3s}\nsilence: true"
    (books / "breaker.yaml").write_text(playbook("breaker-drill", "BreakerDrill", rails))
    async with serving(target.app()) as url, serving(slack.app()) as slack_url:
        am = start_alertmanager(tmp_path / "am", "http://127.0.0.1:1/unused", TOKEN)
        try:
            extra = {
                "SLACK_BOT_TOKEN": "xoxb-test",
                "REMEDIATE_SLACK_CHANNEL": "C1",
                "REMEDIATE_SLACK_API_URL": f"{slack_url}/api",
            }
            async with (
                replicas(
                    tmp_path,
                    temporal_env_address,
                    queue,
                    [("one", ["serve"], "one")],
                    books,
                    url,
                    am.url,
                    False,
                    **extra,
                ) as (one,),
                httpx2.AsyncClient(headers=AUTH, timeout=30) as http,
            ):

                async def fire(key: str, ends: datetime | None = None) -> dict[str, str]:
                    labels = {"alertname": "BreakerDrill", "key": key}
                    body: dict[str, object] = {"labels": labels}
                    if ends is not None:
                        body["endsAt"] = ends.isoformat()
                    am.post_alerts([body])
                    return labels

                async def silences(key: str) -> list[dict[str, object]]:
                    listed = (await http.get(f"{am.url}/api/v2/silences")).json()
                    return [
                        s
                        for s in listed
                        if {"name": "key", "value": key, "isRegex": False, "isEqual": True} in s["matchers"]
                    ]

                for n in range(1, 4):
                    key = f"b{n}"
                    labels = await fire(key)
                    target.verify_open.clear()  # hold the run at verify: it has acted and not ended
                    assert (
                        await http.post(
                            f"{one.url}/alertmanager",
                            json=webhook_message(labels, uuid.uuid4().hex[:16], datetime.now(UTC).isoformat()),
                        )
                    ).is_success
                    await until(lambda: target.writes[key] > 0)  # noqa: B023 - awaited here, in this iteration
                    held = await silences(key)
                    assert [s["status"]["state"] for s in held] == ["active"], held  # type: ignore[index]
                    assert "remediate run breaker-drill/" in str(held[0]["comment"])
                    ends = datetime.fromisoformat(str(held[0]["endsAt"]))
                    assert timedelta(minutes=55) < ends - datetime.now(UTC) <= timedelta(hours=1)  # ends by itself
                    target.verify_open.set()
                    done = await finished(temporal_client, queue, "breaker-drill", n, within=40)
                    mine = next(s for s in done if s.labels["key"] == key)
                    assert mine.status == "succeeded" and mine.effectiveness == "ineffective", mine
                    assert [s["status"]["state"] for s in await silences(key)] == ["expired"]  # type: ignore[index]
                assert "breaker opened" in mine.reason
                switch_env = {"REMEDIATE_TEMPORAL_ADDRESS": temporal_env_address, "REMEDIATE_TASK_QUEUE": queue}
                shown = await cli(["breaker", "status", "breaker-drill"], switch_env)
                assert "breaker-drill: breaker OPEN" in shown.stdout and "3 ineffective" in shown.stdout, shown
                labels = await fire("b4")
                await http.post(
                    f"{one.url}/alertmanager",
                    json=webhook_message(labels, uuid.uuid4().hex[:16], datetime.now(UTC).isoformat()),
                )
                done = await finished(temporal_client, queue, "breaker-drill", 4, within=30)
                fourth = next(s for s in done if s.labels["key"] == "b4")
                assert fourth.status == "blocked_by_policy" and fourth.limit == "breaker", fourth.reason
                assert target.writes["b4"] == 0
                announced = [m["text"] for m in slack.messages("chat.postMessage")]
                assert len([t for t in announced if "Breaker open for playbook breaker-drill" in t]) == 1, announced
                reset = await cli(["breaker", "reset", "breaker-drill", "--as", "drill"], switch_env)
                assert reset.returncode == 0 and "breaker-drill: breaker closed" in reset.stdout, reset

                labels = await fire("b5")  # after the reset it writes again, and this time the alert resolves
                await http.post(
                    f"{one.url}/alertmanager",
                    json=webhook_message(labels, uuid.uuid4().hex[:16], datetime.now(UTC).isoformat()),
                )
                await until(lambda: target.writes["b5"] > 0)
                await fire("b5", ends=datetime.now(UTC) - timedelta(seconds=1))
                done = await finished(temporal_client, queue, "breaker-drill", 5, within=30)
                fifth = next(s for s in done if s.labels["key"] == "b5")
                assert fifth.status == "succeeded" and fifth.effectiveness == "effective", fifth

                target.failing.add("b6")  # a fix that fails: its silence is expired at once
                labels = await fire("b6")
                await http.post(
                    f"{one.url}/alertmanager",
                    json=webhook_message(labels, uuid.uuid4().hex[:16], datetime.now(UTC).isoformat()),
                )
                done = await finished(temporal_client, queue, "breaker-drill", 6, within=30)
                sixth = next(s for s in done if s.labels["key"] == "b6")
                assert sixth.status == "failed" and sixth.effectiveness == "ineffective" and sixth.silence
                assert [s["status"]["state"] for s in await silences("b6")] == ["expired"]  # type: ignore[index]
                metrics = (await http.get(f"{one.url}/metrics")).text
                assert 'remediate_run_effectiveness_total{playbook="breaker-drill",result="ineffective"} 4.0' in metrics
                assert 'remediate_run_effectiveness_total{playbook="breaker-drill",result="effective"} 1.0' in metrics
        finally:
            am.process.stop()
