"""Observability artifacts generated from the code and the configuration: alert rules, Grafana dashboards and
provisioning, the metrics reference. `gwtel observability` writes them; tests fail when a committed copy is stale.
"""
