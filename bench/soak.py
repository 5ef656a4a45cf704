"""Soak: the whole pipeline at a steady rate for a while, with the memory (RSS) of every process over time and
the end-to-end lag. Run on purpose, never in CI: `python bench/soak.py --minutes 10` (services up: `gwtel up`).

The agent replays a generated capture at recorded speed with timestamps moved to the present (`gwtel replay
--pace --shift-to-now`), the Flink job runs unbounded (`gwtel aggregate`), the loader loads (`gwtel load`); all
are real processes on the configuration's services, with topics, groups and a database of their own. Every
sample records the RSS of agent, broker, Flink (the job process and its JVM), loader, ClickHouse and Prometheus,
and two lags: now minus the export time of the newest flow stored, and now minus the end of the newest
10 s window stored. Verdict: RSS is flat when no process grows by more than 10 % + 30 MB from the first sample
after warm-up to the last.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml
from _clients import delete_at_exit

from gwtel.config import GwtelConfig, load_config
from gwtel.services.clickhouse import ClickHouseService
from gwtel.services.kafka import KafkaService
from gwtel.services.prometheus import PrometheusService
from ingest.synth import SynthConfig, generate
from processors.chclient import make_client
from processors.loader_setup import migrate

GROWTH_FRACTION = 0.10
GROWTH_SLACK_MB = 30.0


def rss_mb(pid: int | None, with_children: bool = False) -> float:
    """Resident memory of a process (and its descendants), MB; 0 when it is gone."""
    if pid is None:
        return 0.0
    pids = [pid]
    if with_children:
        pids += descendants(pid)
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for c in children:
        out.append(int(c))
        out += descendants(int(c))
    return out


def soak_config(base: GwtelConfig, tag: str) -> GwtelConfig:
    return base.model_copy(
        update={
            "kafka": base.kafka.model_copy(
                update={
                    "topics": base.kafka.topics.model_copy(
                        update={
                            "flows": f"soak.flows.{tag}",
                            "aggregates": f"soak.aggregates.{tag}",
                            "late": f"soak.late.{tag}",
                            "dead_letter": f"soak.deadletter.{tag}",
                        }
                    )
                }
            ),
            "clickhouse": base.clickhouse.model_copy(update={"database": f"soak_{tag}"}),
            "agent": base.agent.model_copy(
                update={"agent_id": f"soak-{tag}", "spool_dir": f"agent/spool-soak-{tag}", "metrics_port": 0}
            ),
            "job": base.job.model_copy(
                update={
                    "group_id": f"soak-job-{tag}",
                    "transactional_id_prefix": f"soak-{tag}",
                    "checkpoint_dir": f"flink/checkpoints-soak-{tag}",
                }
            ),
            "loader": base.loader.model_copy(update={"group_id": f"soak-loader-{tag}", "metrics_port": 0}),
        }
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="replay length (default 10)")
    ap.add_argument("--flows-per-s", type=int, default=100, help="steady flow rate of the generated capture")
    ap.add_argument("--sample-s", type=float, default=15.0, help="seconds between samples")
    ap.add_argument("--warmup-fraction", type=float, default=0.3, help="share of the run treated as warm-up")
    args = ap.parse_args()

    base = load_config()
    home = base.local.home_path()
    tag = uuid.uuid4().hex[:8]
    cfg = soak_config(base, tag)
    kafka = KafkaService(cfg, home)
    ch = ClickHouseService(cfg, home)
    prom = PrometheusService(cfg, home)
    for svc in (kafka, ch, prom):
        if not (svc.running() and svc.health().ok):
            print(f"{svc.name} is not up: run `gwtel up` first", file=sys.stderr)
            return 2
    kafka.ensure_topics(list(cfg.kafka.topics.model_dump().values()))
    delete_at_exit(kafka, list(cfg.kafka.topics.model_dump().values()))
    migrate(cfg)

    work = Path(tempfile.mkdtemp(prefix="gwtel-soak-"))
    config = work / "config.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")), encoding="utf-8")
    seconds = int(args.minutes * 60)
    duration = max(10, seconds - seconds % 10)
    print(f"generating {duration} s of traffic at {args.flows_per_s} flows/s in {work}", flush=True)
    generate(
        SynthConfig(seed=7, flows=args.flows_per_s * duration, duration_s=duration), work / "in.pcap", work / "t.json"
    )
    gwtel = [sys.executable, "-m", "gwtel.cli", "--config", str(config)]
    logs = {n: (work / f"{n}.log").open("w") for n in ("agent", "flink", "loader")}
    procs = {
        "flink": subprocess.Popen([*gwtel, "aggregate"], stdout=logs["flink"], stderr=subprocess.STDOUT),
        "loader": subprocess.Popen(
            [*gwtel, "load", "--metrics-port", "0"], stdout=logs["loader"], stderr=subprocess.STDOUT
        ),
    }
    time.sleep(5)  # let the job and the loader subscribe; the replay is what is measured
    procs["agent"] = subprocess.Popen(
        [*gwtel, "replay", "--pace", "--shift-to-now", str(work / "in.pcap")],
        stdout=logs["agent"],
        stderr=subprocess.STDOUT,
    )
    client = make_client(cfg.clickhouse)
    names = ["agent", "broker", "flink", "loader", "clickhouse", "prometheus"]
    rows: list[tuple[float, list[float], float | None, float | None]] = []
    t0 = time.monotonic()
    try:
        while True:
            time.sleep(args.sample_s)
            if procs["agent"].poll() is not None:
                break  # the replay is over: a sample now would show the agent at 0 MB
            now_ns = time.time_ns()
            rss = [
                rss_mb(procs["agent"].pid),
                rss_mb(kafka.pid()),
                rss_mb(procs["flink"].pid, with_children=True),
                rss_mb(procs["loader"].pid),
                rss_mb(ch.pid()),
                rss_mb(prom.pid()),
            ]
            newest, window_end = client.query(
                f"SELECT (SELECT max(export_ns) FROM {cfg.clickhouse.database}.flows_raw), "
                f"(SELECT max(window_start_ms) + 10000 FROM {cfg.clickhouse.database}.bandwidth_window "
                "WHERE window_s = 10)"
            ).result_rows[0]
            # max() of an empty table is 0 in ClickHouse: nothing stored yet
            flow_lag = (now_ns - int(newest)) / 1e9 if newest else None
            window_lag = (now_ns / 1e6 - int(window_end)) / 1e3 if window_end and window_end > 10_000 else None
            rows.append((time.monotonic() - t0, rss, flow_lag, window_lag))
            lag_txt = " ".join(f"{x:8.1f}" if x is not None else "       -" for x in (flow_lag, window_lag))
            print(f"{rows[-1][0]:7.0f}s " + " ".join(f"{v:10.1f}" for v in rss) + f"  {lag_txt}", flush=True)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        for p in procs.values():
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        client.close()
        for f in logs.values():
            f.close()
    return report(rows, names, args.warmup_fraction)


def report(rows: list[tuple[float, list[float], float | None, float | None]], names: list[str], warmup: float) -> int:
    if len(rows) < 3:
        print("too few samples for a verdict: run longer", file=sys.stderr)
        return 1
    print("\n   time " + " ".join(f"{n + ' MB':>10}" for n in names) + "  flow lag s  window lag s")
    for t, rss, fl, wl in rows:
        lag_cols = " ".join(f"{x:10.1f}" if x is not None else "         -" for x in (fl, wl))
        print(f"{t:6.0f}s " + " ".join(f"{v:10.1f}" for v in rss) + f"  {lag_cols}")
    start = rows[min(len(rows) - 2, int(len(rows) * warmup))][1]
    end = rows[-1][1]
    flat = True
    for name, a, b in zip(names, start, end, strict=True):
        allowed = a * GROWTH_FRACTION + GROWTH_SLACK_MB
        grew = b - a
        ok = grew <= allowed
        flat &= ok
        print(f"{name:>10}: {a:8.1f} -> {b:8.1f} MB after warm-up ({grew:+.1f}, allowed +{allowed:.1f}) "
              f"{'flat' if ok else 'GROWING'}")  # fmt: skip
    lags = [r[2] for r in rows if r[2] is not None]
    if lags:
        median = sorted(lags)[len(lags) // 2]
        print(
            f"end-to-end lag (now - export time of the newest stored flow): median {median:.1f} s, "
            f"max {max(lags):.1f} s"
        )
    print(f"verdict: RSS {'flat' if flat else 'NOT flat'} after warm-up")
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
