"""`remediate dev`: a local Temporal dev server, the worker and the web server on embedded defaults, dry-run."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from service.compose import Adapters, load_all, serve
from service.config import Settings
from service.devserver import start_dev_server
from service.errors import ConfigError
from service.policy import Mode

SAMPLE = Path(__file__).parent / "samples" / "selftest-alert.json"
DEV_CONFIG = """\
# remediate dev: embedded connections (REMEDIATE_CONFIG replaces them). Only `remediate` (the service itself) is
# reachable out of the box; the others name the systems the shipped playbooks expect, through env references.
approvers: [dev]
connections:
  remediate: {{type: http, base_url: "http://{listen}"}}
  jobs-db: {{type: postgres, dsn: "env:JOBS_DB_DSN"}}
  llm-orchestrator-db: {{type: postgres, dsn: "env:LLM_ORCHESTRATOR_DSN"}}
  llm-orchestrator-api: {{type: http, base_url: "http://llm-orchestrator.invalid"}}
  greenlang-api: {{type: http, base_url: "http://orchestrator-service.invalid:8080"}}
  greenlang-redis: {{type: redis, url: "env:GREENLANG_REDIS_URL"}}
  wms-temporal: {{type: temporal, address: "temporal-frontend.invalid:7233", namespace: wms}}
  flovyn-db: {{type: postgres, dsn: "env:FLOVYN_DSN"}}
  maestro-db: {{type: postgres, dsn: "env:MAESTRO_DSN"}}
  maestro-redis: {{type: redis, url: "env:MAESTRO_REDIS_URL"}}
  cluster: {{type: kubernetes, kubeconfig: "{home}/.kube/config"}}
"""


def _playbooks_dir(settings: Settings) -> Path:
    if settings.playbooks.is_dir():
        return settings.playbooks
    shipped = Path(__file__).resolve().parent.parent / "playbooks"
    if shipped.is_dir():
        return shipped
    raise ConfigError(f"no playbook directory at {settings.playbooks}; set REMEDIATE_PLAYBOOKS")


def sample_message() -> str:
    """The sample alert with a fresh startsAt, so every paste is a new occurrence."""
    message = json.loads(SAMPLE.read_text(encoding="utf-8"))
    now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    for alert in message["alerts"]:
        alert["startsAt"] = now
    return json.dumps(message)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    host_port = settings.temporal_address.rpartition(":")
    temporal_port = int(host_port[2]) if host_port[2].isdigit() else 7233
    updates: dict[str, object] = {"mode": Mode.DRY_RUN, "playbooks": _playbooks_dir(settings)}
    if settings.config is None:
        config_file = Path(tempfile.mkdtemp(prefix="remediate-dev-")) / "config.yaml"
        config_file.write_text(DEV_CONFIG.format(listen=settings.listen, home=Path.home()), encoding="utf-8")
        updates["config"] = config_file
    dev_settings = settings.model_copy(update=updates)
    config, playbooks = load_all(dev_settings)
    print(f"remediate dev: starting the Temporal dev server on 127.0.0.1:{temporal_port} …", flush=True)
    env = await start_dev_server(port=temporal_port, namespace=settings.temporal_namespace)
    try:
        ready = asyncio.Event()
        server = asyncio.create_task(serve(dev_settings, env.client, playbooks, Adapters.build(config), ready=ready))
        await ready.wait()
        auth = ""
        if settings.webhook_token:
            auth = " -H 'Authorization: Bearer '\"$REMEDIATE_WEBHOOK_TOKEN\""
        print(
            f"""
remediate dev is up: {len(playbooks)} playbook(s) ({", ".join(p.name for p in playbooks)}), mode dry-run.
  webhook:  POST http://{settings.listen}/alertmanager
  runs:     remediate runs list   (REMEDIATE_TEMPORAL_ADDRESS=127.0.0.1:{temporal_port})

Send a sample alert (a new occurrence each time):

curl -sS -X POST http://{settings.listen}/alertmanager -H 'Content-Type: application/json'{auth} \\
  -d '{sample_message()}'

Then: remediate runs list && remediate runs show <id>      (Ctrl-C stops everything)
""",
            flush=True,
        )
        os.environ.setdefault("REMEDIATE_TEMPORAL_ADDRESS", f"127.0.0.1:{temporal_port}")
        await server
    finally:
        await env.shutdown()
    return 0
