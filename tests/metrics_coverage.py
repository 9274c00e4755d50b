"""Which metrics the Grafana dashboard and the alert rules read, and which of them a running deployment's
/metrics text has no sample of: for checking that every series they read is really set, not only
declared (the e2e test reads a running deployment's endpoint; tests/controller/metrics/ unit-tests this)."""

from __future__ import annotations

import json
import re
import threading
import urllib.request
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from controller.metrics.gpu_telemetry import GPU_SERIES
from tests.promql import referenced_metric_names
from tests.repo import REPO_ROOT

DASHBOARD = REPO_ROOT / "docker" / "grafana" / "dashboards" / "ekya.json"
RULES = REPO_ROOT / "alerts" / "ekya-rules.yml"
PROMETHEUS_OWN = frozenset({"up"})  # series Prometheus makes itself for every scrape target


def dashboard_exprs(path: Path = DASHBOARD) -> list[str]:
    dashboard = json.loads(path.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", []) if t.get("expr")]
    return exprs + [v["query"]["query"] for v in dashboard.get("templating", {}).get("list", [])
                    if isinstance(v.get("query"), dict) and v["query"].get("query")]


def rule_exprs(path: Path = RULES) -> list[str]:
    doc = yaml.safe_load(path.read_text())
    return [rule["expr"] for group in doc["groups"] for rule in group["rules"]]


def read_metric_names(exprs: list[str] | None = None) -> set[str]:
    """Every metric name the dashboard's and the rules' PromQL reads (label_values(m, l) reads m)."""
    names: set[str] = set()
    for expr in dashboard_exprs() + rule_exprs() if exprs is None else exprs:
        variable = re.fullmatch(r"\s*label_values\(\s*([a-zA-Z_:][\w:]*)\s*(?:\{[^}]*\})?\s*,\s*\w+\s*\)\s*", expr)
        names |= {variable.group(1)} if variable else referenced_metric_names(expr)
    return names - PROMETHEUS_OWN


def sample_names(metrics_text: str) -> set[str]:
    """The names of the samples in a /metrics text, exactly as exposed (prometheus_client's parser would
    rename a counter's samples to `_total`, which Triton's, e.g. nv_inference_request_success, are not)."""
    list(text_string_to_metric_families(metrics_text))  # a malformed text is an error (ValueError)
    return {re.split(r"[{\s]", line, maxsplit=1)[0] for line in metrics_text.splitlines()
            if line.strip() and not line.startswith("#")}


def missing(seen: set[str], wanted: set[str], *, gpu: bool = False) -> set[str]:
    """The wanted names not among the sample names seen. The GPU series are only wanted on a GPU machine."""
    if not gpu:
        wanted = wanted - set(GPU_SERIES)
    return wanted - seen


def missing_samples(metrics_text: str, wanted: set[str], *, gpu: bool = False) -> set[str]:
    """The wanted names with no sample in a /metrics text."""
    return missing(sample_names(metrics_text), wanted, gpu=gpu)


def fetch_metrics(url: str, timeout_s: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - a test's own endpoint
        return response.read().decode()


class MetricsScraper:
    """Reads /metrics endpoints over HTTP every `every_s` on a thread, as Prometheus would, until stopped
    (and once more then), and remembers every sample name seen: what a deployment really set while it
    ran, whichever of its processes (a restarted controller starts a fresh registry) set it."""

    def __init__(self, every_s: float = 2.0) -> None:
        self.every_s = every_s
        self.seen: set[str] = set()
        self.scrapes = 0
        self._urls: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, *urls: str | None) -> None:
        with self._lock:
            self._urls += [u for u in urls if u]
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="metrics-scraper", daemon=True)
            self._thread.start()

    def scrape(self) -> None:
        with self._lock:
            urls = list(self._urls)
        for url in urls:
            try:
                names = sample_names(fetch_metrics(url, timeout_s=5.0))
            except (OSError, ValueError):  # an endpoint that went away (a controller that stopped)
                continue
            with self._lock:
                self.seen |= names
                self.scrapes += 1

    def stop(self) -> set[str]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.scrape()
        return self.seen

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.scrape()
