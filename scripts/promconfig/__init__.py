"""Prometheus and Alertmanager configuration, generated from one source of thresholds.

- prometheus/thresholds.yml: every alert threshold and ``for:`` duration (tune here);
- catalogue.py, recording.py, slo.py: the rules' expressions and annotations;
- rules.py renders prometheus/rules/*.yml; prometheus_config.py renders prometheus.yml for
  compose service names or loopback ports; alertmanager_config.py derives the loopback
  variant of alertmanager/alertmanager.yml;
- kubernetes.py renders deploy/kubernetes/ (PrometheusRules, ServiceMonitors, dashboard
  ConfigMaps) from the same rules and grafana/, for prometheus-operator users, and the tracker's
  own Deployments, Services and ConfigMap (workloads.py) from common/config.py; kubelabels.py
  holds the names and labels that link them.

CLI: ``python -m scripts.promconfig --help``. The functions below are the API the local
stack (scripts/localstack.py) and the tests use.
"""

from scripts.promconfig.alertmanager_config import (
    render_local_alertmanager_config,
    write_local_alertmanager_config,
)
from scripts.promconfig.prometheus_config import (
    COMPOSE_TARGETS,
    Targets,
    render_prometheus_config,
    write_local_config,
)
from scripts.promconfig.rules import render_rule_files, stale_rule_files, write_rule_files
from scripts.promconfig.thresholds import ThresholdError, ThresholdSet, load_thresholds

__all__ = [
    "COMPOSE_TARGETS",
    "Targets",
    "ThresholdError",
    "ThresholdSet",
    "load_thresholds",
    "render_local_alertmanager_config",
    "render_prometheus_config",
    "render_rule_files",
    "stale_rule_files",
    "write_local_alertmanager_config",
    "write_local_config",
    "write_rule_files",
]
