"""`gwtel config`: print the effective configuration (file over built-in defaults) as YAML.

Safe to paste into a ticket: passwords are never part of the configuration, only where they are read from
(`password_env`, `password_file`).
"""

from __future__ import annotations

import argparse

import yaml

from gwtel.config import load_config


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "config",
        help="print the effective configuration (no secrets)",
        description="Print the configuration in effect (the --config file over the built-in defaults) as YAML. "
        "It names where each password is read from, never a password.",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), end="")
    return 0
