"""Run every benchmark under bench/ and print one table: `python bench` (what `make bench` does).

A benchmark is any `bench/<name>.py` whose name does not start with `_`; it runs as its own process and leaves
its figures in `bench/results/` (convention in bench/_results.py). Results files written during this run are
gathered into one table and `bench/results/all.json`. Files in the older flat format (a JSON object of figures)
are shown one figure per row. `python bench e2e run` runs only those.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import RESULTS, machine, table

HERE = Path(__file__).resolve().parent


def _rows(path: Path) -> list[dict[str, Any]]:
    doc = json.loads(path.read_text())
    name = str(doc.get("benchmark", path.stem)) if isinstance(doc, dict) else path.stem
    if isinstance(doc, dict) and isinstance(doc.get("rows"), list):
        return [{"benchmark": name, **r} for r in doc["rows"]]
    if isinstance(doc, dict):  # flat {figure: number}
        return [
            {"benchmark": name, "metric": k, "value": v}
            for k, v in doc.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        ]
    return []


def main(argv: list[str]) -> int:
    wanted = set(argv)
    scripts = sorted(p for p in HERE.glob("*.py") if not p.name.startswith("_") and (not wanted or p.stem in wanted))
    unknown = wanted - {p.stem for p in scripts}
    if unknown:
        print(f"no benchmark named {', '.join(sorted(unknown))} in {HERE}", file=sys.stderr)
        return 2
    RESULTS.mkdir(exist_ok=True)
    failed = []
    started = time.time()
    for script in scripts:
        print(f"==> {script.name}", flush=True)
        t0 = time.monotonic()
        rc = subprocess.run([sys.executable, str(script)], check=False).returncode
        print(f"    {script.name} exited {rc} after {time.monotonic() - t0:.0f}s", flush=True)
        if rc:
            failed.append(script.name)
    rows: list[dict[str, Any]] = []
    for path in sorted(RESULTS.glob("*.json")):
        if path.name != "all.json" and path.stat().st_mtime >= started:
            rows += _rows(path)
    (RESULTS / "all.json").write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1) + "\n")
    m = machine()
    print(f"\nmachine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, Python {m['python']}")
    print(table(rows))
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
