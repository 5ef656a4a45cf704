"""`gwtel observability`: write the alert rules, Grafana dashboards and metrics reference from the configuration."""

from __future__ import annotations

import argparse
from pathlib import Path

from gwtel.config import load_config


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "observability",
        help="generate alert rules, Grafana dashboards and the metrics reference",
        description="Write deploy/prometheus (alert rules with the configured SLOs and capacities), "
        "deploy/grafana (provisioning and dashboards) and docs/metrics.md under --out (default: this "
        "checkout). With --check, write nothing and exit 1 when a file differs.",
    )
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="root folder (default: this checkout)")
    p.add_argument("--check", action="store_true", help="only report files that are not up to date")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from gwtel.observability.generate import REPO_ROOT, stale, write

    cfg = load_config(args.config)
    root = args.out or REPO_ROOT
    if args.check:
        bad = stale(cfg, root)
        for rel in bad:
            print(f"out of date: {root / rel} (run `gwtel observability`)")
        return 1 if bad else 0
    changed = write(cfg, root)
    print(f"{len(changed)} file(s) written under {root}" + "".join(f"\n  {rel}" for rel in changed))
    return 0
