"""The Flink job on a local standalone cluster (one JobManager, two TaskManagers), at parallelism 1 and 2.

Starts the cluster on free loopback ports (gwtel.services.flink_cluster, the distribution inside PyFlink; the
same kind of session cluster deploy/k8s/flink.yaml runs), points `job.flink` at it, and runs bench/job.py's
`job` variant there: N FlowRecords loaded once, each run bounded over them in a fresh client process, to a
fresh aggregates topic. Baseline, same session: bench/job.py's plain Kafka consume of the same topic.
The figures (`records_per_s` = N / (seconds - startup), and their ratio to the baseline) are bench/job.py's;
the steady rate is not available here (the job's Prometheus reporter runs on the TaskManagers, not in the
client). Needs `gwtel up`. Writes bench/results/flink_cluster.json.

Usage: `python bench/flink_cluster.py [--records 300000] [--runs 3] [--slots 1]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gwtel.config import load_config  # noqa: E402
from gwtel.services.flink_cluster import FlinkCluster  # noqa: E402
from tests.ports import free_port  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--slots", type=int, default=1, help="slots per TaskManager (1: parallelism 2 spans both)")
    args = ap.parse_args()

    base = load_config()
    home = Path(tempfile.mkdtemp(prefix="gwtel-flink-cluster-"))
    cluster = FlinkCluster(home, rest_port=free_port(), rpc_port=free_port(), slots=args.slots, taskmanagers=2)
    cluster.start()
    try:
        data = base.model_dump(mode="json")
        data["job"]["flink"] = {**data["job"]["flink"], **cluster.job_settings()}
        cfg_path = home / "config.yaml"
        cfg_path.write_text(yaml.safe_dump(data), encoding="utf-8")
        env = {**os.environ, "GWTEL_CONFIG": str(cfg_path)}
        argv = [sys.executable, str(ROOT / "bench" / "job.py"), "--records", str(args.records),
                "--runs", str(args.runs), "--parallelism", "1,2", "--variants", "job"]  # fmt: skip
        print(f"Flink cluster at {cluster.endpoint()}: {cluster.health().detail}", flush=True)
        out = ROOT / "bench" / "results"
        # bench/job.py writes job.json: keep the in-process job's own figures there.
        own = out / "job.json"
        previous = own.read_bytes() if own.exists() else None
        try:
            subprocess.run(argv, env=env, check=True)
            results = json.loads(own.read_text(encoding="utf-8"))
        finally:
            if previous is not None:
                own.write_bytes(previous)
        results["cluster"] = {"taskmanagers": 2, "slots_per_taskmanager": args.slots}
        (out / "flink_cluster.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    finally:
        cluster.stop()
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
