"""Write the Kubernetes monitoring objects from their one source of truth:

    alerts/ekya-rules.yml                  -> deploy/kubernetes/base/prometheus-rule.yaml (a PrometheusRule)
    docker/grafana/dashboards/ekya.json    -> deploy/kubernetes/base/grafana/ekya.json (kustomize reads files
                                              only under its own directory, so the dashboard ConfigMap
                                              is generated from this copy)

Run after editing either source: `python scripts/gen_k8s_monitoring.py` (`--check`: exit 1 if a written file
is out of date, as tests/deploy/test_kubernetes.py does)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "alerts" / "ekya-rules.yml"
DASHBOARD = ROOT / "docker" / "grafana" / "dashboards" / "ekya.json"
BASE = ROOT / "deploy" / "kubernetes" / "base"
PROMETHEUS_RULE = BASE / "prometheus-rule.yaml"
DASHBOARD_COPY = BASE / "grafana" / "ekya.json"

HEADER = """\
# GENERATED from alerts/ekya-rules.yml by scripts/gen_k8s_monitoring.py: edit that file and run the script.
# The Prometheus Operator loads these rules where its ruleSelector matches this object's labels (add yours,
# e.g. `release: <your kube-prometheus-stack release>`, in an overlay).
"""


def prometheus_rule(rules_text: str) -> str:
    groups = yaml.safe_load(rules_text)["groups"]
    rule = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": "ekya-rules", "labels": {"app.kubernetes.io/name": "ekya"}},
            "spec": {"groups": groups}}
    return HEADER + yaml.safe_dump(rule, sort_keys=False, width=120, allow_unicode=True)


def expected() -> dict[Path, str]:
    """Every generated file and the text it must have."""
    return {PROMETHEUS_RULE: prometheus_rule(RULES.read_text()), DASHBOARD_COPY: DASHBOARD.read_text()}


def stale() -> list[Path]:
    return [path for path, text in expected().items() if not path.is_file() or path.read_text() != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check: exit 1 if a generated file is stale")
    args = parser.parse_args(argv)
    if args.check:
        out_of_date = stale()
        for path in out_of_date:
            print(f"{path.relative_to(ROOT)} is out of date: run python scripts/gen_k8s_monitoring.py",
                  file=sys.stderr)
        return 1 if out_of_date else 0
    for path, text in expected().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
