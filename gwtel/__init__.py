"""gateway-telemetry: per-partner bandwidth and latency telemetry for an international gateway."""

__version__ = "0.1.0"
