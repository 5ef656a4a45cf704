"""deploy/k8s/ and deploy/container/, checked offline: every manifest against the JSON schema of its kind (core
kinds vendored from kubernetes-validate, operator resources written from their CRDs, both in tests/data/k8s),
the settings that carry the design (replication, capabilities, ports, shards) against the code's own, the
embedded gwtel configuration through gwtel's validation, the Prometheus configuration through promtool, and
the Containerfile's COPY sources and entrypoints against the repository and the `gwtel` command."""

from __future__ import annotations

import ast
import importlib
import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from gwtel.cli import build_parser
from gwtel.config import GwtelConfig, load_config
from gwtel.services.java import DEPLOY_LOCAL
from ingest.collect.config import CollectorConfig, parse_listen
from ingest.config import AgentConfig
from processors.config import JobConfig, LoaderConfig

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
CONTAINERFILE = ROOT / "deploy" / "container" / "Containerfile"
DATA = ROOT / "tests" / "data" / "k8s"
CORE = json.loads((DATA / "core-kinds.json").read_text())
CRDS = yaml.safe_load((DATA / "crd-schemas.yaml").read_text())


def documents() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                yield path.name, doc


DOCS = list(documents())


def find(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for _, d in DOCS if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def schema_for(doc: dict[str, Any]) -> dict[str, Any]:
    key = f"{doc['apiVersion']}/{doc['kind']}"
    if key in CORE["kinds"]:
        return {**CORE["kinds"][key], "$defs": CORE["$defs"]}
    if key in CRDS:
        return {**CRDS[key], "$defs": CRDS["$defs"]}
    raise AssertionError(f"no vendored schema for {key}: add it to tests/data/k8s")


@pytest.mark.parametrize(("file", "doc"), DOCS, ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in DOCS])
def test_every_manifest_validates_against_its_schema(file: str, doc: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(schema_for(doc))
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
    assert not errors, f"{file}: " + "; ".join(errors)
    assert doc["metadata"]["namespace"] == "gwtel"


def test_the_schemas_catch_mistakes() -> None:
    # The strict schemas reject what the API server would silently drop or refuse.
    loader = find("Deployment", "gwtel-loader")
    typo = {**loader, "spec": {**loader["spec"], "replica": 3}}
    assert list(jsonschema.Draft202012Validator(schema_for(typo)).iter_errors(typo))
    topic = find("KafkaTopic", "gwtel.flows.v1")
    bad = {**topic, "spec": {**topic["spec"], "partitions": 0}}
    assert list(jsonschema.Draft202012Validator(schema_for(bad)).iter_errors(bad))
    flink = find("FlinkDeployment")
    old = {**flink, "spec": {**flink["spec"], "flinkVersion": "v2_9"}}
    assert list(jsonschema.Draft202012Validator(schema_for(old)).iter_errors(old))


def embedded_config(tmp_path: Path, key: str = "gwtel.yaml", node: str | None = None) -> GwtelConfig:
    text = find("ConfigMap", "gwtel-config")["data"][key]
    if node is not None:
        text = text.replace("@NODE@", node)
    path = tmp_path / "gwtel.yaml"
    path.write_text(text)
    return load_config(path)


def test_kafka_three_kraft_brokers_rf3_min_isr2(tmp_path: Path) -> None:
    pool = find("KafkaNodePool")
    assert pool["spec"]["replicas"] == 3 and sorted(pool["spec"]["roles"]) == ["broker", "controller"]
    kafka = find("Kafka")
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    config = kafka["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] == 3 and config["min.insync.replicas"] == 2
    assert config["transaction.state.log.replication.factor"] == 3 and config["transaction.state.log.min.isr"] == 2
    # The Flink job's transactions must fit under the brokers' maximum.
    assert config["transaction.max.timeout.ms"] >= JobConfig().transaction_timeout_ms
    cfg = embedded_config(tmp_path)
    topics = {d["metadata"]["name"]: d["spec"] for _, d in DOCS if d["kind"] == "KafkaTopic"}
    assert set(topics) == set(cfg.kafka.topics.model_dump().values())
    for name, spec in topics.items():
        assert spec["replicas"] == 3 and spec["config"]["min.insync.replicas"] == 2, name
    assert topics[cfg.kafka.topics.flows]["partitions"] == cfg.kafka.partitions
    assert cfg.kafka.replication_factor == 3


def test_agent_keeps_only_net_raw_and_net_admin(tmp_path: Path) -> None:
    ds = find("DaemonSet", "gwtel-agent")
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    [agent] = pod["containers"]
    sec = agent["securityContext"]
    assert sec["capabilities"] == {"drop": ["ALL"], "add": ["NET_RAW", "NET_ADMIN"]}
    assert sec["allowPrivilegeEscalation"] is False and "privileged" not in sec
    for init in pod["initContainers"]:
        assert init["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert agent["ports"][0]["containerPort"] == AgentConfig().metrics_port
    # The template the init container fills in is a valid configuration for any node name.
    cfg = embedded_config(tmp_path, "agent.yaml.tmpl", node="capture-7.example")
    assert cfg.agent.agent_id == "capture-7.example"


def test_collector_service_carries_the_default_udp_listeners() -> None:
    svc = find("Service", "gwtel-collector")
    assert svc["spec"]["externalTrafficPolicy"] == "Local"  # exporters are told apart by source address
    ports = {(p["port"], p["protocol"]) for p in svc["spec"]["ports"]}
    assert ports == {(parse_listen(u).port, "UDP") for u in CollectorConfig().listen}
    container = find("Deployment", "gwtel-collector")["spec"]["template"]["spec"]["containers"][0]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert {named[str(p["targetPort"])] for p in svc["spec"]["ports"]} == {p for p, _ in ports}
    assert named["metrics"] == CollectorConfig().metrics_port


def test_clickhouse_cluster_matches_the_gwtel_configuration(tmp_path: Path) -> None:
    cfg = embedded_config(tmp_path)
    chi = find("ClickHouseInstallation")
    [cluster] = chi["spec"]["configuration"]["clusters"]
    assert cfg.clickhouse.cluster == cluster["name"]
    shards = cluster["layout"]["shardsCount"]
    assert cluster["layout"]["replicasCount"] >= 2
    # The operator names one Service per replica chi-<installation>-<cluster>-<shard>-<replica>.
    name = chi["metadata"]["name"]
    assert cfg.clickhouse.shard_urls == tuple(
        f"http://chi-{name}-{cluster['name']}-{s}-0.gwtel.svc:8123" for s in range(shards)
    )
    assert cfg.clickhouse.url == f"http://clickhouse-{name}.gwtel.svc:8123"
    assert chi["spec"]["configuration"]["zookeeper"]["nodes"], "replicated tables need Keeper"


def test_flink_session_has_the_slots_the_job_asks_for(tmp_path: Path) -> None:
    cfg = embedded_config(tmp_path)
    spec = find("FlinkDeployment")["spec"]
    slots = int(spec["flinkConfiguration"]["taskmanager.numberOfTaskSlots"]) * spec["taskManager"]["replicas"]
    assert slots >= cfg.job.parallelism
    assert cfg.job.flink["execution.target"] == "remote"
    assert cfg.job.flink["rest.address"].startswith(f"{find('FlinkDeployment')['metadata']['name']}-rest.")
    assert find("Deployment", "gwtel-aggregate")["spec"]["replicas"] == 1


def test_loader_metrics_port_and_secret() -> None:
    container = find("Deployment", "gwtel-loader")["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"][0]["containerPort"] == LoaderConfig().metrics_port
    [env] = container["env"]
    assert env["name"] == GwtelConfig().clickhouse.password_env


def test_prometheus_configuration_passes_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool comes with Debian's prometheus (deploy/local/system-packages.sh)"
    config = yaml.safe_load(find("ConfigMap", "gwtel-prometheus")["data"]["prometheus.yml"])
    assert config["rule_files"] == ["/etc/prometheus/rules/gwtel.rules.yml"]
    shutil.copy(ROOT / "deploy" / "prometheus" / "gwtel.rules.yml", tmp_path / "gwtel.rules.yml")
    config["rule_files"] = [str(tmp_path / "gwtel.rules.yml")]
    # Debian builds Prometheus without Kubernetes discovery, so promtool here cannot read it: each job's
    # discovery is checked by hand and swapped for a static target; promtool checks the rest (relabelling
    # rules, regexes, the alert rules).
    for job in config["scrape_configs"]:
        [sd] = job.pop("kubernetes_sd_configs")
        assert sd == {"role": "pod", "namespaces": {"names": ["gwtel"]}}, job["job_name"]
        job["static_configs"] = [{"targets": ["127.0.0.1:9"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    check = [promtool, "check", "config", str(tmp_path / "prometheus.yml")]
    out = subprocess.run(check, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


# -- the Containerfile ---------------------------------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in CONTAINERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


def stages() -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for word, rest in instructions():
        if word == "FROM":
            m = re.match(r"^(\S+) AS (\w+)$", rest)
            assert m is not None, f"every stage is named: FROM {rest}"
            current = found.setdefault(m.group(2), [])
        current.append((word, rest))
    return found


def test_containerfile_copies_only_what_exists() -> None:
    copies = [rest for word, rest in instructions() if word == "COPY" and not rest.startswith("--from=")]
    assert copies
    for rest in copies:
        *sources, _dest = shlex.split(rest)
        for src in sources:
            assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
    # The pom lands where gwtel.services.java looks for deploy/local in an installed package.
    [pom] = [r for r in copies if "pom.xml" in r]
    site = "/usr/local/lib/python3.11/site-packages"
    assert shlex.split(pom)[1] == f"{site}/{(DEPLOY_LOCAL / 'flink' / 'pom.xml').relative_to(DEPLOY_LOCAL.parents[1])}"


def test_every_image_runs_a_real_gwtel_command() -> None:
    found = stages()
    assert {"agent", "collector", "job", "loader"} <= set(found)
    parser = build_parser()
    for target in ("agent", "collector", "job", "loader"):
        [entry] = [json.loads(r) for w, r in found[target] if w == "ENTRYPOINT"]
        cmd = [json.loads(r) for w, r in found[target] if w == "CMD"]
        assert entry[0] == "gwtel", target
        parser.parse_args(entry[1:] + (cmd[0] if cmd else []))  # exits on an unknown command or option
        assert ("USER", "gwtel") in found[target], f"{target} runs as root"
    # The manifests run each image with arguments its command accepts.
    images = {"agent": "agent", "collector": "collector", "job": "job", "loader": "loader"}
    for _, doc in DOCS:
        pod = doc.get("spec", {}).get("template", {}).get("spec", {})
        for c in pod.get("containers", []):
            target = images[c["image"].split("/")[-1].split(":")[0]]
            [entry] = [json.loads(r) for w, r in found[target] if w == "ENTRYPOINT"]
            args = [re.sub(r"\$\((\w+)\)", "x", a) for a in c.get("args", [])]
            parser.parse_args(entry[1:] + args)


def test_python_run_steps_name_real_code() -> None:
    """Each `python -c` of a RUN step parses, and every name it imports exists in this repository's code."""
    snippets = [m.group(1) for w, r in instructions() if w == "RUN" for m in re.finditer(r'python -c "([^"]+)"', r)]
    assert snippets
    for code in snippets:
        tree = ast.parse(code)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module is not None:
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{node.module}.{alias.name}"


def test_exposed_ports_are_the_default_metrics_ports() -> None:
    found = stages()
    want = {
        "agent": AgentConfig().metrics_port,
        "collector": CollectorConfig().metrics_port,
        "job": JobConfig().metrics_port,
        "loader": LoaderConfig().metrics_port,
    }
    for target, port in want.items():
        exposed = " ".join(r for w, r in found[target] if w == "EXPOSE").split()
        assert str(port) in exposed, target
