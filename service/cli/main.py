"""The `remediate` command line: parse, then import only the verb that runs (a kill switch loads no playbook)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from service.cli.arguments import build_parser
from service.config import Settings
from service.vocabulary import log_format, redact
from service.vocabulary.errors import PlaybookError, RemediateError

Verb = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]


def _verb(command: str) -> Verb:
    """The verb's function, importing its module only now: `kill-switch on` is the verb that must start fastest."""
    if command == "kill-switch":
        from service.cli import switch_command

        return switch_command.kill_switch
    if command == "breaker":
        from service.cli import rail_commands

        return rail_commands.breaker
    if command == "replay":
        from service.cli import replay_command

        return replay_command.replay
    if command == "report":
        from service.cli import promotion_command

        return promotion_command.report
    from service.cli import commands

    verbs: dict[str, Verb] = {
        "lint": commands.lint,
        "schema": commands.schema,
        "serve": commands.serve,
        "dev": commands.dev,
        "plan": commands.plan,
        "test": commands.test,
        "runs": commands.runs,
        "approve": commands.decide,
        "reject": commands.decide,
        "migrate": commands.migrate,
        "audit": commands.audit,
    }
    return verbs[command]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redact.install()  # DSNs and tokens never reach the log, whichever library logs them
    try:
        settings = Settings()
        log_format.configure(settings.log_format)
        if settings.log_format == "json":
            log_format.forward_core_logs()
        work = _verb(args.command)(args, settings)
        # serve and dev drain on SIGTERM themselves; a short command is cancelled so its `finally` blocks run
        return asyncio.run(work if args.command in ("serve", "dev") else _until_terminated(work))
    except PlaybookError as exc:
        print(exc, file=sys.stderr)
        return 1
    except RemediateError as exc:
        print(f"remediate: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except asyncio.CancelledError:
        return 143


async def _until_terminated(work: Coroutine[Any, Any, int]) -> int:
    """SIGTERM cancels short commands, so `finally` blocks run (pools are closed)."""
    task = asyncio.current_task()
    if task is not None and threading.current_thread() is threading.main_thread():
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await work


def entry() -> None:
    """Console entry point: run, flush, and leave without interpreter teardown.

    Temporal's Rust core keeps native threads that may call into Python while the interpreter finalizes, which
    aborts short-lived client processes now and then (temporalio/sdk-python#300). Everything that needs closing
    has been closed inside `main` by now.
    """
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
