"""`gwtel` command line: one subcommand per job, each module registering its own parser.

Errors a person can act on (``ConfigError``, ``ServiceError``, ``UserError``) print one clear message and exit
non-zero; nothing the user can cause ends in a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Protocol

from gwtel import __version__
from gwtel.config import ConfigError
from gwtel.errors import UserError

# Each module defines `register(subparsers)` and sets `func` on its parser.
COMMAND_MODULES: tuple[str, ...] = (
    "gwtel.commands.aggregate",
    "gwtel.commands.load",
    "gwtel.commands.observability",
    "gwtel.commands.services",
    "gwtel.commands.synth",
    "gwtel.commands.replay",
    "gwtel.commands.capture",
    "gwtel.commands.collect",
    "gwtel.commands.report",
    "gwtel.commands.forecast",
    "gwtel.commands.run",
    "gwtel.commands.verify",
)


class _Registrar(Protocol):
    def __call__(self, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None: ...


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gwtel",
        description="Gateway telemetry: per-partner bandwidth and latency, capture -> Kafka -> Flink -> ClickHouse.",
    )
    parser.add_argument("--version", action="version", version=f"gwtel {__version__}")
    parser.add_argument(
        "--config", metavar="FILE", default=None, help="configuration file (default: $GWTEL_CONFIG or built-in)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        register: _Registrar = importlib.import_module(name).register
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (ConfigError, UserError) as exc:
        print(f"gwtel {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gwtel {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
