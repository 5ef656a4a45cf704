"""Templates persisted as one small file per exporter, so a restart decodes an exporter's data at once instead
of dropping it until the exporter's next template refresh (minutes on many routers)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import gwtel_native


def _name(exporter: bytes) -> str:
    family = socket.AF_INET if len(exporter) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, exporter).replace(":", "_") + ".tpl"


def _address(name: str) -> bytes | None:
    text = name.removesuffix(".tpl").replace("_", ":")
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_pton(family, text)
        except OSError:
            continue
    return None


class TemplateFiles:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._written: dict[bytes, bytes] = {}

    def load(self, col: gwtel_native.Collector) -> int:
        """Restore every exporter's file; a damaged one is skipped with a warning (the next refresh repairs it)."""
        if not self.dir.is_dir():
            return 0
        n = 0
        for p in sorted(self.dir.glob("*.tpl")):
            exporter = _address(p.name)
            if exporter is None:
                continue
            data = p.read_bytes()
            try:
                n += col.load_templates(exporter, data)
            except ValueError as exc:
                print(f"warning: {p}: {exc}; its exporter's templates come back with its next refresh", file=sys.stderr)
                continue
            self._written[exporter] = data
        return n

    def save(self, col: gwtel_native.Collector) -> int:
        """Write the files whose content changed (atomically: a crash leaves the old or the new file)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        n = 0
        for exporter in col.exporters():
            data = col.save_templates(exporter)
            if self._written.get(exporter) == data:
                continue
            path = self.dir / _name(exporter)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            self._written[exporter] = data
            n += 1
        return n
