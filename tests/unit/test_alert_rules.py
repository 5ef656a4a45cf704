"""The alert rules: generated from the configuration, accepted by promtool, every alert pinned by a unit test."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from gwtel.config import GwtelConfig
from gwtel.observability.rules import RULES_FILE, render_rules
from gwtel.services.prometheus import find_tool
from ingest.partners import PartnersConfig

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES_PATH = RULES_DIR / RULES_FILE
TEST_FILES = sorted((RULES_DIR / "tests").glob("*.test.yml"))


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(find_tool("promtool")), *args], capture_output=True, text=True, timeout=120, check=False, cwd=RULES_DIR
    )


def alerts_of(text: str) -> list[dict[str, Any]]:
    doc = yaml.safe_load(text)
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def test_committed_rules_are_generated_from_the_default_config() -> None:
    assert RULES_PATH.read_text(encoding="utf-8") == render_rules(GwtelConfig()), (
        "deploy/prometheus/gwtel.rules.yml is stale: run `gwtel observability`"
    )


def test_promtool_check_rules() -> None:
    proc = promtool("check", "rules", str(RULES_PATH))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(alerts_of(RULES_PATH.read_text()))} rules found" in proc.stdout


def test_promtool_test_rules() -> None:
    assert TEST_FILES
    proc = promtool("test", "rules", *(str(f) for f in TEST_FILES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(TEST_FILES)


def test_every_alert_has_a_quiet_and_a_firing_point() -> None:
    quiet: set[str] = set()
    firing: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                exp = check.get("exp_alerts") or []
                (firing if exp else quiet).add(check["alertname"])
                for alert in exp:
                    # Labels and annotations are pinned, not left to whatever the rule produces.
                    assert alert["exp_labels"].get("severity"), (path.name, check)
                    assert set(alert["exp_annotations"]) == {"summary", "description"}, (path.name, check)
    names = {a["alert"] for a in alerts_of(RULES_PATH.read_text())}
    assert names - firing == set(), "alerts without a firing test"
    assert names - quiet == set(), "alerts without a not-yet-firing test"


def test_thresholds_come_from_the_configuration() -> None:
    base = GwtelConfig()
    groups = dict(base.partners.groups)
    groups["japan"] = groups["japan"].model_copy(update={"slo": {"vr": 5.5, "gaming": 20}, "capacity_bps": 10**10})
    cfg = base.model_copy(update={"partners": PartnersConfig(groups=groups)})
    japan = [a for a in alerts_of(render_rules(cfg)) if a["labels"].get("partner") == "japan"]
    slo = {a["labels"]["app_class"]: a["expr"] for a in japan if a["alert"] == "GwtelPartnerLatencySLOBreach"}
    assert set(slo) == {"vr", "gaming"}
    assert slo["vr"].endswith("> 0.0055") and slo["gaming"].endswith("> 0.02")
    (cap,) = [a["expr"] for a in japan if a["alert"] == "GwtelPartnerBandwidthNearCapacity"]
    assert cap.endswith("* 8 > 8000000000")  # 80% of 10 Gbit/s
    # No contract, no capacity alert.
    groups["japan"] = groups["japan"].model_copy(update={"capacity_bps": 0})
    cfg = base.model_copy(update={"partners": PartnersConfig(groups=groups)})
    assert not [
        a
        for a in alerts_of(render_rules(cfg))
        if a["alert"] == "GwtelPartnerBandwidthNearCapacity" and "japan" in a["expr"]
    ]
