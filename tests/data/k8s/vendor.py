"""Regenerate core-kinds.json: the JSON schemas of the core Kubernetes kinds deploy/k8s/ uses, from the
`kubernetes-validate` package on PyPI (strict variant: unknown fields are errors).

    python -m venv /tmp/kv && /tmp/kv/bin/pip install kubernetes-validate==1.37.0
    /tmp/kv/bin/python tests/data/k8s/vendor.py 1.35.0

Only the definitions those kinds reach are kept, with every reference rewritten to this one file.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

KINDS = {
    "apps/v1/Deployment": "deployment-apps-v1.json",
    "apps/v1/DaemonSet": "daemonset-apps-v1.json",
    "v1/Service": "service-v1.json",
    "v1/ConfigMap": "configmap-v1.json",
}
_REF = re.compile(r"^(?:/api/_definitions\.json)?#/\$defs/(.+)$")


def main(version: str) -> None:
    import kubernetes_validate  # type: ignore[import-not-found]

    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{version}-local-strict"
    defs: dict[str, Any] = json.loads((root / "_definitions.json").read_text())["$defs"]
    kept: dict[str, Any] = {}

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key == "$ref" and isinstance(value, str) and (m := _REF.match(value)) is not None:
                    name = m.group(1)
                    if name not in kept:
                        kept[name] = {}
                        kept[name] = rewrite(defs[name])
                    out[key] = f"#/$defs/{name}"
                else:
                    out[key] = rewrite(value)
            return out
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    kinds = {kind: rewrite(json.loads((root / name).read_text())) for kind, name in KINDS.items()}
    for schema in kinds.values():
        schema.pop("$schema", None)
        schema.pop("$id", None)
    out = {"kubernetes": version, "source": "kubernetes-validate (PyPI), strict", "kinds": kinds,
           "$defs": dict(sorted(kept.items()))}  # fmt: skip
    (Path(__file__).parent / "core-kinds.json").write_text(json.dumps(out, indent=1, sort_keys=False) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
