"""`remediate dev`: a local Temporal dev server, the worker and the web server on embedded defaults, dry-run."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import sys
import tempfile
from pathlib import Path

from pydantic import HttpUrl, SecretStr
from ruamel.yaml import YAML

from service.app.compose import Adapters, Notifiers, load_catalog
from service.app.error_reporting import guard_secrets
from service.app.process import serve
from service.cli.devserver import start_dev_server
from service.config import Settings
from service.config_file import ConfigFile, load_config_file
from service.stores.setup import ready_store
from service.vocabulary.errors import ConfigError
from service.vocabulary.redact import redact

SAMPLE = Path(__file__).parent / "samples" / "selftest-alert.json"
DEV_CONFIG = """\
# remediate dev: embedded connections (REMEDIATE_CONFIG adds to them and wins on a name). Only `remediate` (the
# service itself) is reachable out of the box; the others name the systems the shipped playbooks expect.
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


SHIPPED = Path(__file__).resolve().parents[2] / "playbooks"


def playbook_dirs(settings: Settings, extra: list[str]) -> list[Path]:
    """The shipped playbooks, plus the user's directories (REMEDIATE_PLAYBOOKS and --playbooks), each once."""
    wanted = [SHIPPED, *(d for d in settings.playbook_dirs() if d.is_dir()), *(Path(e) for e in extra)]
    dirs: list[Path] = []
    for d in wanted:
        if not d.is_dir():
            raise ConfigError(f"no playbook directory at {d}")
        if d.resolve() not in [x.resolve() for x in dirs]:
            dirs.append(d)
    return dirs


def local_set(settings: Settings, extra: list[str]) -> tuple[list[Path], ConfigFile]:
    """The playbooks and connections of a command that runs them here (plan, replay, report): without
    REMEDIATE_PLAYBOOKS the shipped set and the dev connections (REMEDIATE_CONFIG merged in as `dev` merges it);
    with it, those directories and REMEDIATE_CONFIG (the dev connections when it is not set); each `--playbooks DIR`
    added."""
    shipped = "playbooks" not in settings.model_fields_set
    config = dev_config(settings) if settings.config is None or shipped else load_config_file(settings.config)
    if shipped:
        return playbook_dirs(settings, extra), config
    return list(dict.fromkeys(d.resolve() for d in settings.playbook_dirs() + [Path(e) for e in extra])), config


def dev_config(settings: Settings) -> ConfigFile:
    """The embedded connections, with the user's REMEDIATE_CONFIG added on top (a name there wins)."""
    embedded = ConfigFile.model_validate(
        YAML(typ="safe", pure=True).load(DEV_CONFIG.format(listen=settings.listen, home=Path.home()))
    )
    if settings.config is None:
        return embedded
    user = load_config_file(settings.config)
    return ConfigFile(
        connections={**embedded.connections, **user.connections},
        approvers=user.approvers or embedded.approvers,
        approver_groups={**embedded.approver_groups, **user.approver_groups},
        approver_tokens=user.approver_tokens,
        viewer_tokens=user.viewer_tokens,
        limits=user.limits,
    )


ATTACHED = "dev-attached.json"  # under the state directory: the trail the last `remediate dev` keeps


def state_dir() -> Path:
    """Where `remediate dev` keeps its Temporal history between restarts: $XDG_STATE_HOME/remediate."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "remediate"


def _attach(temporal_address: str, audit: str) -> None:
    """Say which trail this dev keeps, for the CLI run beside it (`runs list`, `audit export`): never a secret,
    only the sqlite path dev chose itself."""
    state_dir().mkdir(parents=True, exist_ok=True)
    (state_dir() / ATTACHED).write_text(json.dumps({"temporal_address": temporal_address, "audit": audit}))


def attached_trail(temporal_address: str) -> str | None:
    """The audit trail of the `remediate dev` on this local Temporal address (its last start), if any."""
    host, _, port = temporal_address.rpartition(":")
    try:
        attached = json.loads((state_dir() / ATTACHED).read_text(encoding="utf-8"))
        dev_port = str(attached["temporal_address"]).rpartition(":")[2]
        audit = str(attached["audit"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return audit if host in ("127.0.0.1", "localhost") and port == dev_port else None


def invoked_as() -> str:
    """The command as the user started it (`.venv/bin/remediate`, `python -m service`), so the banner's next
    commands paste as they are."""
    first = sys.argv[0]
    if first.endswith("__main__.py"):
        return "python -m service"
    return first if os.sep in first else "remediate"


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen here now. Bound as servers bind (SO_REUSEADDR): the TIME-WAIT sockets that a
    stopped `remediate dev` leaves for a minute do not count, while anything listening there does."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


NOW = "__REMEDIATE_NOW__"
# Inside the curl's single-quoted body: close the quote, let the shell put in the time, open it again.
SHELL_NOW = '"\'"$(date -u +%Y-%m-%dT%H:%M:%SZ)"\'"'


def sample_message() -> str:
    """The sample alert for the banner's curl; its startsAt is the shell's clock, so every paste (a second or more
    after the last) is a new occurrence."""
    message = json.loads(SAMPLE.read_text(encoding="utf-8"))
    for alert in message["alerts"]:
        alert["startsAt"] = NOW
    return json.dumps(message).replace(f'"{NOW}"', SHELL_NOW)


async def run(args: argparse.Namespace, settings: Settings, stop: asyncio.Event) -> int:
    port_text = settings.temporal_address.rpartition(":")[2]
    temporal_port = int(port_text) if port_text.isdigit() else 7233
    web_host, web_port = settings.listen_host_port
    for what, where, port, variable in (
        ("the Temporal dev server", "127.0.0.1", temporal_port, "REMEDIATE_TEMPORAL_ADDRESS"),
        ("the web server", web_host, web_port, "REMEDIATE_LISTEN"),
    ):
        # Never attach to whatever already listens there: that would look like success and be something else.
        if not port_free(where, port):
            raise ConfigError(f"port {port} for {what} is already in use; stop what holds it or set {variable}")
    # Temporal's own convention (7233 -> 8233); the UI is a convenience, so a taken port leaves it off, said so.
    ui_port = temporal_port + 1000
    ui = ui_port <= 65535 and port_free("127.0.0.1", ui_port)
    config_file = Path(tempfile.mkdtemp(prefix="remediate-dev-")) / "config.yaml"
    embedded = dev_config(settings)
    token_file = None
    if not embedded.approver_tokens:  # the console and the API need an approver: `dev`, with a token of its own
        token_file = dev_approver_token()
        embedded = embedded.model_copy(update={"approver_tokens": {"dev": f"file:{token_file}"}})
    config_file.write_text(embedded.model_dump_json(exclude_defaults=True), encoding="utf-8")
    dirs = playbook_dirs(settings, list(args.playbooks or []))
    dev_settings = settings.model_copy(
        update={
            "playbooks": Path(os.pathsep.join(str(d) for d in dirs)),
            "config": config_file,
            "temporal_address": f"127.0.0.1:{temporal_port}",
            "temporal_ui_url": settings.temporal_ui_url or (HttpUrl(f"http://127.0.0.1:{ui_port}") if ui else None),
        }
    )
    history = None if args.ephemeral else state_dir() / "dev-temporal.db"
    trail = (state_dir() if history else config_file.parent) / "audit.db"
    if settings.database_url is None:  # the audit trail beside the history (in the temporary directory if ephemeral)
        dev_settings = dev_settings.model_copy(update={"database_url": SecretStr(f"sqlite://{trail}")})
        _attach(dev_settings.temporal_address, f"sqlite://{trail}")
    config = load_config_file(dev_settings.config)
    catalog = load_catalog(dev_settings, config)
    playbooks = catalog.playbooks
    mode = settings.mode
    print(f"remediate dev: starting the Temporal dev server on 127.0.0.1:{temporal_port} …", flush=True)
    if history is not None:
        history.parent.mkdir(parents=True, exist_ok=True)
    env = await start_dev_server(
        port=temporal_port,
        namespace=settings.temporal_namespace,
        db_file=str(history) if history else None,
        ui_port=ui_port if ui else None,
    )
    notifiers = Notifiers()
    secrets = guard_secrets(dev_settings, config, notifiers.secrets())
    audit = await ready_store(dev_settings)
    try:
        ready = asyncio.Event()
        server = asyncio.create_task(
            serve(
                dev_settings,
                catalog,
                Adapters.build(config),
                client=env.client,
                ready=ready,
                stop=stop,
                audit=audit,
                secrets=secrets,
                notifiers=notifiers,
            )
        )
        waiting = asyncio.create_task(ready.wait())
        await asyncio.wait({server, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if server.done():
            waiting.cancel()
            server.result()
        auth = ""
        if settings.webhook_token:
            auth = " -H 'Authorization: Bearer '\"$REMEDIATE_WEBHOOK_TOKEN\""
        warning = (
            ""
            if mode.plans_only
            else f"\n  !! mode {mode} (from REMEDIATE_MODE): writes WILL be made on the configured connections !!\n"
        )
        me = invoked_as()
        temporal_ui = (
            f"http://127.0.0.1:{ui_port}/   (the Temporal UI; a run's page links to its workflow)"
            if ui
            else f"no UI (port {ui_port} is in use)"
        )
        # The CLI finds the trail dev chose by itself (dev-attached.json); a store the user named, they know.
        reader = "`runs list` and `audit export` read it, nothing to set" if settings.database_url is None else "yours"
        print(
            f"""
remediate dev is up: {len(playbooks)} playbook(s) ({", ".join(p.name for p in playbooks)}), mode {mode}.{warning}
  playbooks: {", ".join(str(d) for d in dirs)}
  webhook:  POST http://{settings.listen}/alertmanager
  console:  http://{settings.listen}/ui/   ({_signs_in(token_file)})
  runs:     {me} runs list   (REMEDIATE_TEMPORAL_ADDRESS=127.0.0.1:{temporal_port})
  temporal: {temporal_ui}
  history:  {history or "in memory (--ephemeral): gone when this stops"}
  audit:    {_shown(dev_settings)}   ({reader})

Send a sample alert (a new occurrence each time):

curl -sS -X POST http://{settings.listen}/alertmanager -H 'Content-Type: application/json'{auth} \\
  -d '{sample_message()}'

Then: {me} runs list && {me} runs show <id>      (Ctrl-C stops everything)
""",
            flush=True,
        )
        await server
    finally:
        if audit is not None:
            await audit.close()
        await env.shutdown()
    return 0


DEV_TOKEN_FILE = "dev-approver-token"  # noqa: S105 - the file's name (under the state directory), not a token


def dev_approver_token() -> Path:
    """The file holding the `dev` approver's token (made once, readable by this user only)."""
    path = state_dir() / DEV_TOKEN_FILE
    if not path.exists():
        state_dir().mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(24), encoding="utf-8")
    return path


def _signs_in(token_file: Path | None) -> str:
    return f"sign in as dev with the token in {token_file}" if token_file else "sign in with an approver token"


def _shown(settings: Settings) -> str:
    url = settings.database_url.get_secret_value() if settings.database_url else ""
    return redact(url) if url else "none"
