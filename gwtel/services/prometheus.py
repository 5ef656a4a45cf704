"""The local Prometheus server: Debian's `prometheus` binary, a config from a template, file discovery.

Processes announce themselves by dropping a target file into `<home>/prometheus/targets/` (see
`gwtel.metrics_http`); Prometheus watches that folder, so nothing has to restart or reload when a process
starts or stops. Rules come from the project's `deploy/prometheus/*.rules.yml`.
"""

from __future__ import annotations

import json
import shutil
import string
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from gwtel.config import GwtelConfig
from gwtel.errors import ServiceError
from gwtel.services.base import Health, ProcessService, port_open

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "deploy" / "local" / "prometheus" / "prometheus.yml.tmpl"
RULES_GLOB = REPO_ROOT / "deploy" / "prometheus" / "*.rules.yml"

INSTALL_HINT = "install Debian's package: apt-get install -y --no-install-recommends prometheus"
HOST = "127.0.0.1"
SCRAPE_INTERVAL_S = 5
SD_REFRESH_INTERVAL_S = 5
START_TIMEOUT_S = 60.0


def find_tool(name: str) -> Path:
    """Path of `prometheus` or `promtool`; ServiceError with the install command when absent."""
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").is_file() else None)
    if found is None:
        raise ServiceError(f"{name} not found on PATH; {INSTALL_HINT}")
    return Path(found)


def _get_json(url: str, timeout_s: float = 5.0) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:
        # The API explains bad queries in the body of a 400/422.
        body = exc.read().decode("utf-8", errors="replace")[:500]
        exc.close()
        raise ServiceError(f"Prometheus at {url} answered HTTP {exc.code}: {body}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ServiceError(
            f"Prometheus at {url} cannot be reached ({exc}); is it running? try `gwtel up prometheus`"
        ) from None


def _api_data(url: str) -> Any:
    payload = _get_json(url)
    if not isinstance(payload, dict) or payload.get("status") != "success":
        raise ServiceError(f"Prometheus at {url} returned an error: {payload!r:.500}")
    return payload.get("data")


def query(url: str, promql: str) -> list[dict[str, Any]]:
    """Instant query; each result has `metric` (labels) and `value` ([unix time, "string value"])."""
    full = f"{url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    data = _api_data(full)
    if not isinstance(data, dict) or data.get("resultType") not in ("vector", "scalar", "string", "matrix"):
        raise ServiceError(f"unexpected answer to {promql!r} from {url}: {data!r:.500}")
    result = data["result"]
    if data["resultType"] in ("scalar", "string"):
        # Normalise to the vector shape so callers read `value` the same way.
        return [{"metric": {}, "value": result}]
    return list(result)


def active_targets(url: str) -> list[dict[str, Any]]:
    """Targets being scraped: `labels`, `scrapeUrl`, `health` ("up"/"down"/"unknown"), `lastError`, ..."""
    data = _api_data(f"{url.rstrip('/')}/api/v1/targets?state=active")
    if not isinstance(data, dict):
        raise ServiceError(f"unexpected answer from {url}/api/v1/targets: {data!r:.500}")
    return list(data.get("activeTargets", []))


class PrometheusService(ProcessService):
    name = "prometheus"

    def __init__(self, cfg: GwtelConfig, home: Path) -> None:
        super().__init__(home)
        self.cfg = cfg
        self.home = home
        self.port = cfg.local.ports.prometheus
        self.data_dir = self.dir / "data"
        self.config_path = self.dir / "prometheus.yml"
        self.targets_dir = self.dir / "targets"
        self.rules_glob = RULES_GLOB

    def fetch(self) -> None:
        find_tool("prometheus")
        find_tool("promtool")

    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def health(self) -> Health:
        url = f"{self.endpoint()}/-/ready"
        try:
            with urllib.request.urlopen(url, timeout=2.0) as resp:
                status = resp.status
        except urllib.error.HTTPError as exc:
            # 503 while the TSDB is still opening or replaying its write-ahead log.
            exc.close()
            return Health(False, f"{url}: HTTP {exc.code}")
        except (urllib.error.URLError, OSError) as exc:
            return Health(False, f"{url}: {getattr(exc, 'reason', exc)}")
        return Health(status == 200, f"{url}: HTTP {status}")

    def render_config(self) -> str:
        try:
            template = string.Template(TEMPLATE_PATH.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ServiceError(f"cannot read the Prometheus config template {TEMPLATE_PATH}: {exc.strerror}") from None
        return template.substitute(
            scrape_interval=f"{SCRAPE_INTERVAL_S}s",
            scrape_timeout=f"{max(1, SCRAPE_INTERVAL_S - 1)}s",
            sd_refresh_interval=f"{SD_REFRESH_INTERVAL_S}s",
            # JSON strings are valid YAML scalars: quoting survives any character in the home path.
            targets_glob=json.dumps(str(self.targets_dir / "*.json")),
            rules_glob=json.dumps(str(self.rules_glob)),
            self_address=json.dumps(f"{HOST}:{self.port}"),
        )

    def write_config(self) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        # The folder must exist before start: Prometheus can only watch directories that are there.
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.config_path.with_suffix(".yml.tmp")
        tmp.write_text(self.render_config(), encoding="utf-8")
        tmp.replace(self.config_path)
        return self.config_path

    def check_config(self) -> str:
        """Run `promtool check config` on the rendered config; ServiceError with its output when it fails."""
        proc = subprocess.run(
            [str(find_tool("promtool")), "check", "config", str(self.config_path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        output = (proc.stdout + proc.stderr).strip()
        if proc.returncode != 0:
            raise ServiceError(f"promtool rejects {self.config_path}:\n{output}")
        return output

    def start(self) -> None:
        if self.running() and self.health().ok:
            # Already up: apply template changes and new rule files (a glob is only re-read on reload).
            self.write_config()
            self.check_config()
            self.reload()
            return
        super().start()

    def reload(self) -> None:
        """Re-read the config and rules without a restart (needs --web.enable-lifecycle)."""
        req = urllib.request.Request(f"{self.endpoint()}/-/reload", method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30.0):
                pass
        except urllib.error.HTTPError as exc:
            # A rejected config or rule file: the body says which and why; the old config stays active.
            body = exc.read().decode("utf-8", errors="replace").strip()[:1000]
            exc.close()
            raise ServiceError(
                f"Prometheus at {self.endpoint()} rejected the reload (HTTP {exc.code}): {body}; see {self.log_path}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ServiceError(f"Prometheus reload at {self.endpoint()} failed ({exc}); see {self.log_path}") from None

    def _start(self) -> None:
        if port_open(HOST, self.port):
            raise ServiceError(
                f"port {self.port} is already in use by a process gwtel did not start. If it is the "
                "Debian package's own service, stop it for good with `systemctl disable --now prometheus`; "
                "otherwise set local.ports.prometheus (and prometheus.url) to a free port."
            )
        self.write_config()
        self.check_config()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.spawn(
            [
                str(find_tool("prometheus")),
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.data_dir}",
                "--storage.tsdb.retention.time=7d",
                f"--web.listen-address={HOST}:{self.port}",
                "--web.enable-lifecycle",
                "--log.level=info",
            ],
            cwd=self.dir,
        )
        self.wait_healthy(START_TIMEOUT_S)
