"""Every generated observability file, by its path in the repository, and a staleness check.

The committed copies are generated from the embedded default configuration; an operator with other partners,
SLOs or capacities regenerates them from their own (`gwtel --config FILE observability --out DIR`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from gwtel.config import GwtelConfig

REPO_ROOT = Path(__file__).resolve().parents[2]


def _builders() -> dict[str, Callable[[GwtelConfig], str]]:
    # Imported here: the dashboards and the metrics reference import most of the project.
    from gwtel.observability import dashboards, grafana, metrics_doc, rules

    out: dict[str, Callable[[GwtelConfig], str]] = {
        f"deploy/prometheus/{rules.RULES_FILE}": rules.render_rules,
        "deploy/grafana/provisioning/datasources/gwtel.yaml": grafana.datasources_provisioning,
        "deploy/grafana/provisioning/dashboards/gwtel.yaml": lambda _cfg: grafana.dashboards_provisioning(),
        "docs/metrics.md": metrics_doc.render_metrics_doc,
    }
    for name, build in dashboards.DASHBOARDS.items():
        out[f"deploy/grafana/dashboards/{name}"] = _as_json(build)
    return out


def _as_json(build: Callable[[GwtelConfig], dict[str, Any]]) -> Callable[[GwtelConfig], str]:
    from gwtel.observability.grafana import render_json

    return lambda cfg: render_json(build(cfg))


def artifacts(cfg: GwtelConfig) -> dict[str, str]:
    """Relative path -> file text."""
    return {path: build(cfg) for path, build in _builders().items()}


def stale(cfg: GwtelConfig, root: Path = REPO_ROOT) -> list[str]:
    """Paths under `root` whose content differs from what the code generates (missing files included)."""
    out = []
    for rel, text in artifacts(cfg).items():
        path = root / rel
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            out.append(rel)
    return out


def write(cfg: GwtelConfig, root: Path = REPO_ROOT) -> list[str]:
    """Write every artifact under `root`; returns the paths that changed."""
    changed = []
    for rel, text in artifacts(cfg).items():
        path = root / rel
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        changed.append(rel)
    return changed
