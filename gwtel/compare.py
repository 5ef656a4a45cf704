"""Compare ClickHouse's per-partner aggregates with an expected-aggregates file and render the differences.

Separate from the replay (gwtel.pipeline) so the same check runs on data loaded by any means. Bytes, packets and
flows must be exact; a percentile passes when its histogram bucket is within the file's tolerance of the bucket of
the expected value. Rows ClickHouse holds in the file's time range that the file does not list are differences
too: an extra number is as wrong as a missing one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.expected import QUANTILES, Expected, format_time
from schemas.histogram import bucket_mid_us, bucket_of_us


@dataclass(frozen=True)
class Difference:
    where: str  # e.g. "bandwidth 2026-11-26T00:00:10Z japan egress"
    what: str  # the field, or "row"
    detail: str


@dataclass
class Comparison:
    checks: int = 0
    differences: list[Difference] = field(default_factory=list)
    tolerance_buckets: int = 1

    @property
    def ok(self) -> bool:
        return not self.differences

    def render(self) -> str:
        rule = f"bytes, packets and flows exact; percentiles within {self.tolerance_buckets} histogram bucket(s)"
        if self.ok:
            return f"verify: OK, all {self.checks} checks match ({rule})"
        lines = [f"verify: MISMATCH, {len(self.differences)} of {self.checks} checks differ ({rule})"]
        width = max(len(d.where) for d in self.differences)
        for d in self.differences:
            lines.append(f"  {d.where:<{width}}  {d.what:<8} {d.detail}")
        return "\n".join(lines)


def _bandwidth(client: Any, db: str, exp: Expected) -> dict[tuple[int, str, str], tuple[int, int, int]]:
    rows = client.query(
        f"SELECT window_start_ms, partner, direction, sum(bytes_scaled), sum(packets_scaled), sum(flows) "
        f"FROM {db}.bandwidth_window "
        "WHERE window_s = {w:UInt32} AND window_start_ms >= {s:Int64} AND window_start_ms < {e:Int64} "
        "GROUP BY window_start_ms, partner, direction",
        parameters={"w": exp.window_s, "s": exp.start_ms, "e": exp.end_ms},
    ).result_rows
    return {(int(w), str(p), str(d)): (int(b), int(n), int(f)) for w, p, d, b, n, f in rows}


def _latency(client: Any, db: str, exp: Expected, metrics: list[str]) -> dict[tuple[str, str, str], list[int]]:
    """Per (partner, direction, metric): [samples, bucket of p50, p95, p99] from the merged histogram."""
    if not metrics:
        return {}
    qs = ", ".join(str(q) for q in QUANTILES.values())
    rows = client.query(
        f"SELECT partner, direction, metric, sum(samples), quantilesExactWeighted({qs})(bucket, samples) "
        f"FROM {db}.latency_hist_window "
        "WHERE window_s = {w:UInt32} AND metric IN {m:Array(String)} "
        "AND window_start_ms >= {s:Int64} AND window_start_ms < {e:Int64} "
        "GROUP BY partner, direction, metric",
        parameters={"w": exp.window_s, "m": metrics, "s": exp.start_ms, "e": exp.end_ms},
    ).result_rows
    return {(str(p), str(d), str(m)): [int(n), *(int(b) for b in buckets)] for p, d, m, n, buckets in rows}


def _num(n: int) -> str:
    return f"{n:,}"


def compare(client: Any, db: str, exp: Expected) -> Comparison:
    """Check every number of `exp` against database `db`; the result lists each difference."""
    out = Comparison(tolerance_buckets=exp.tolerance.percentile_buckets)
    got_bw = _bandwidth(client, db, exp)
    for row in exp.bandwidth:
        key = (row.window_start_ms, row.partner, row.direction)
        where = f"bandwidth {row.window_start} {row.partner} {row.direction}"
        want = {"bytes": row.bytes, "packets": row.packets}
        if row.flows is not None:
            want["flows"] = row.flows
        out.checks += len(want)
        got = got_bw.pop(key, None)
        if got is None:
            detail = ", ".join(f"{k} {_num(v)}" for k, v in want.items())
            out.differences.append(Difference(where, "row", f"missing in ClickHouse (expected {detail})"))
            continue
        values = dict(zip(("bytes", "packets", "flows"), got, strict=True))
        for name, expected in want.items():
            if values[name] != expected:
                delta = values[name] - expected
                out.differences.append(
                    Difference(where, name, f"expected {_num(expected)}, got {_num(values[name])} ({delta:+,})")
                )
    for (w, p, d), (b, n, f) in sorted(got_bw.items()):
        out.checks += 1
        out.differences.append(
            Difference(
                f"bandwidth {format_time(w)} {p} {d}",
                "row",
                f"not expected, ClickHouse holds bytes {_num(b)}, packets {_num(n)}, flows {_num(f)}",
            )
        )

    metrics = sorted({r.metric for r in exp.latency})
    got_lat = _latency(client, db, exp, metrics)
    tol = exp.tolerance.percentile_buckets
    for lrow in exp.latency:
        where = f"latency {lrow.partner} {lrow.direction} {lrow.metric}"
        stats = got_lat.pop((lrow.partner, lrow.direction, lrow.metric), None)
        if stats is None:
            out.checks += 1
            out.differences.append(Difference(where, "row", "missing in ClickHouse"))
            continue
        if lrow.samples is not None:
            out.checks += 1
            if stats[0] != lrow.samples:
                out.differences.append(
                    Difference(where, "samples", f"expected {_num(lrow.samples)}, got {_num(stats[0])}")
                )
        for i, name in enumerate(QUANTILES, start=1):
            value = getattr(lrow, name)
            if value is None:
                continue
            out.checks += 1
            want_b, got_b = bucket_of_us(round(value)), stats[i]
            if abs(got_b - want_b) > tol:
                out.differences.append(
                    Difference(
                        where,
                        name[:3],
                        f"expected {value / 1000:,.3f} ms, got {bucket_mid_us(got_b) / 1000:,.3f} ms "
                        f"({abs(got_b - want_b)} buckets apart, tolerance {tol})",
                    )
                )
    for p, d, m in sorted(got_lat):
        out.checks += 1
        out.differences.append(
            Difference(f"latency {p} {d} {m}", "row", f"not expected, ClickHouse holds {got_lat[(p, d, m)][0]} samples")
        )
    return out
