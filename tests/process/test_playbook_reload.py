"""Playbooks reloaded in a running `remediate serve` (SIGHUP, POST /api/v1/playbooks/reload): a run started after
the reload uses the new version and its record says which; a broken set is refused and the old one stays."""

from __future__ import annotations

import hashlib
import signal
import uuid
from pathlib import Path

import httpx2
from temporalio.client import Client

from service.runs.state import RunState
from tests.support.deployment import AUTH, ONCALL, alert, cli, env, finished, write_config
from tests.support.processes import start
from tests.support.rail_target import RailTarget, playbook
from tests.support.servers import serving


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def one_run(client: Client, queue: str, key: str, want: int) -> RunState:
    done = await finished(client, queue, "reload-drill", want)
    return next(s for s in done if s.labels["key"] == key)


async def test_a_reload_is_used_by_the_next_run_and_recorded_and_a_broken_one_changes_nothing(
    temporal_env_address: str, temporal_client: Client, tmp_path: Path
) -> None:
    """v1 runs, SIGHUP loads v2 (listed with its hash), the next run writes as v2 and records it; a broken file is
    refused by POST reload (422, file:line:col) and by SIGHUP, and the next run still runs v2."""
    target, queue = RailTarget(), f"reload-{uuid.uuid4().hex[:8]}"
    books = tmp_path / "playbooks"
    books.mkdir()
    file = books / "reload.yaml"
    file.write_text(playbook("reload-drill", "ReloadDrill"))
    v1 = sha(file)
    async with serving(target.app()) as url:
        config = write_config(tmp_path / "config.yaml", url, "one")
        service = start("serve", ["serve"], env(temporal_env_address, queue, config, books), tmp_path)
        try:
            await service.wait_ready()
            async with httpx2.AsyncClient(base_url=service.url, headers=AUTH, timeout=30) as http:
                # The webhook's credential delivers alerts only: it can neither list nor reload playbooks.
                assert (await http.get("/api/v1/playbooks")).status_code == 403
                assert (await http.post("/api/v1/playbooks/reload")).status_code == 403
                http.headers["Authorization"] = f"Bearer {ONCALL}"  # an approver's token from here on
                await http.post("/alertmanager", json=alert("ReloadDrill", "r1"), headers=AUTH)
                first = await one_run(temporal_client, queue, "r1", 1)
                assert first.version is not None and first.version.sha256 == v1 and first.version.file == str(file)
                listed = (await http.get("/api/v1/playbooks")).json()["playbooks"]
                assert listed == [{"name": "reload-drill", "file": str(file), "sha256": v1}]

                file.write_text(
                    file.read_text().replace('path: "/fix/{{ inputs.key }}"', 'path: "/fix/{{ inputs.key }}-v2"')
                )
                v2 = sha(file)
                service.proc.send_signal(signal.SIGHUP)
                await service.wait_log("SIGHUP: reloaded 1 playbook(s): reload-drill@" + v2[:12])
                assert (await http.get("/api/v1/playbooks")).json()["playbooks"][0]["sha256"] == v2
                await http.post("/alertmanager", json=alert("ReloadDrill", "r2"), headers=AUTH)
                second = await one_run(temporal_client, queue, "r2", 2)
                assert second.version is not None and second.version.sha256 == v2
                assert dict(target.writes) == {"r1": 1, "r2-v2": 1}

                file.write_text(
                    file.read_text().replace(
                        "action: http.request\n    connection: target\n    approval",
                        "action: http.nope\n    connection: target\n    approval",
                    )
                )
                refused = await http.post("/api/v1/playbooks/reload")
                assert refused.status_code == 422, refused.text
                assert any(
                    p.startswith(f"{file}:") and "unknown action 'http.nope'" in p for p in refused.json()["problems"]
                )
                service.proc.send_signal(signal.SIGHUP)
                await service.wait_log("SIGHUP: playbook reload refused, the 1 loaded stay")
                assert (await http.get("/api/v1/playbooks")).json()["playbooks"][0]["sha256"] == v2
                await http.post("/alertmanager", json=alert("ReloadDrill", "r3"), headers=AUTH)
                third = await one_run(temporal_client, queue, "r3", 3)
                assert third.version is not None and third.version.sha256 == v2 and target.writes["r3-v2"] == 1
                async with httpx2.AsyncClient() as anonymous:  # no credential: refused before anything loads
                    assert (await anonymous.post(f"{service.url}/api/v1/playbooks/reload")).status_code == 401
            shown = await cli(
                ["runs", "show", second.run_id],
                {"REMEDIATE_TEMPORAL_ADDRESS": temporal_env_address, "REMEDIATE_TASK_QUEUE": queue},
            )
            assert f"playbook version: sha256 {v2[:12]} from {file}" in shown.stdout, shown
        finally:
            assert await service.terminate() == 0
