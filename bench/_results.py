"""The results convention shared by every benchmark under bench/ (read by `python bench`, i.e. `make bench`).

Each benchmark `bench/<name>.py` runs on its own and writes `bench/results/<name>.json`:
``{"benchmark": name, "machine": ..., "rows": [{"metric", "value", "unit", "baseline", "ratio", "target"}]}``.
``baseline`` is the figure of the reference measured in the same run (null when there is none), ``ratio`` is
value / baseline, ``target`` a short text such as ">= 1,000,000".
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Row:
    metric: str
    value: float
    unit: str
    baseline: float | None = None
    target: str = ""

    @property
    def ratio(self) -> float | None:
        return self.value / self.baseline if self.baseline else None


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(mem_gb, 1), "python": platform.python_version()}


def write(name: str, rows: list[Row], **extra: Any) -> Path:
    RESULTS.mkdir(exist_ok=True)
    doc = {
        "benchmark": name,
        "machine": machine(),
        "rows": [{**asdict(r), "ratio": r.ratio} for r in rows],
        **extra,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def table(rows: list[dict[str, Any]]) -> str:
    """Rows of any benchmarks as one aligned table (the runner and the scripts print the same layout)."""

    def num(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float) and abs(v) < 100:
            return f"{v:,.2f}"
        return f"{v:,.0f}"

    head = ("benchmark", "metric", "value", "unit", "baseline", "ratio", "target")
    body = [
        (
            str(r.get("benchmark", "")),
            str(r["metric"]),
            num(r.get("value")),
            str(r.get("unit", "")),
            num(r.get("baseline")),
            "-" if r.get("ratio") is None else f"{r['ratio']:,.2f}x",
            str(r.get("target", "")),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    right = {2, 4, 5}

    def fmt(cells: tuple[str, ...]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in pairs)

    return "\n".join([fmt(head), "  ".join("-" * w for w in widths), *(fmt(b) for b in body)])
