"""`python -m gwtel.chserver --data DIR --port N [--host 127.0.0.1] [--metrics-port M] [--users FILE]`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from gwtel.allocator import reexec_with_settings
from gwtel.chserver.engine import DEFAULT_CONNECTIONS
from gwtel.chserver.handler import MAX_BODY_BYTES
from gwtel.chserver.server import serve
from gwtel.errors import UserError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gwtel.chserver", description=__doc__)
    p.add_argument("--data", required=True, type=Path, help="chDB data directory (owned by this process)")
    p.add_argument("--port", type=int, default=8123, help="HTTP port (default 8123)")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    p.add_argument("--metrics-port", type=int, default=None, help="Prometheus metrics port (default: off)")
    p.add_argument(
        "--announce-home",
        type=Path,
        default=None,
        help="GWTEL_HOME whose local Prometheus should scrape the metrics (writes a target file there)",
    )
    p.add_argument(
        "--users",
        type=Path,
        default=None,
        help="users file (YAML, password_sha256_hex and readonly per user); default: `default` without a "
        "password, allowed on a loopback address only",
    )
    p.add_argument("--max-body-mib", type=int, default=MAX_BODY_BYTES >> 20, help="larger request bodies get HTTP 413")
    p.add_argument(
        "--connections",
        type=int,
        default=DEFAULT_CONNECTIONS,
        help=f"statements run at once, one chDB connection each (default {DEFAULT_CONNECTIONS})",
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = p.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        serve(
            args.data,
            args.host,
            args.port,
            args.metrics_port,
            args.announce_home,
            users_file=args.users,
            max_body_bytes=args.max_body_mib << 20,
            connections=args.connections,
        )
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    reexec_with_settings("gwtel.chserver", sys.argv[1:])  # the allocator settings (gwtel/allocator.py); same pid
    sys.exit(main())
