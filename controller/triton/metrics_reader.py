"""Per-camera serving figures from Triton's own Prometheus metrics.

Any gRPC client can be a camera, so the only place that sees every request of a camera's model is Triton.
`TritonFigures.poll` (an APScheduler job, controller/service.py) reads Triton's metrics endpoint, turns
its cumulative per-(model, version) counters into increments since the last poll and hands them to
`ControllerMetrics.record_serving` per camera (the model of camera X is named X).

What Triton 2.51 (the embedded one) reports, found by flooding a model with a bounded queue:
- `nv_inference_request_success` and `nv_inference_request_failure{reason}`, reason one of OTHER,
  BACKEND, CANCELED, REJECTED. A request that waited longer than the queue policy's timeout is counted
  as REJECTED ("Request timeout expired"): that is a shed request.
- A request refused because the queue already holds `max_queue_size` requests ("Exceeds maximum queue
  size") is counted nowhere, neither in the metrics nor in the statistics API. The deployment's queue is
  sized so that the timeout sheds first (controller/config/schema.py, InferenceConfig).
- `nv_inference_request_duration_us` and `nv_inference_queue_duration_us` accumulate over successful
  requests: their increments over the success count's give the interval's mean latency and queue time.

Counters restart from zero when Triton restarts and a version's series disappears when it is unloaded
(a hot swap): each series is followed on its own, a series that went down counts from zero again, one
that appears after the first poll counts from zero, and the first poll only takes the baseline (a
restarted controller does not count Triton's whole history again).
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields

from prometheus_client.parser import text_string_to_metric_families

from controller.metrics import ControllerMetrics

log = logging.getLogger("controller")

SHED_REASON = "REJECTED"  # the queue policy's timeout (timeout_action: REJECT)


@dataclass
class ServingCounts:
    """One model version's cumulative counters (or the increments of several)."""

    successes: float = 0.0
    failures: float = 0.0  # every reason but REJECTED
    shed: float = 0.0  # reason REJECTED: timed out in the queue
    request_us: float = 0.0  # summed over successful requests
    queue_us: float = 0.0

    @property
    def requests(self) -> float:
        return self.successes + self.failures + self.shed

    def add(self, other: ServingCounts) -> None:
        for field in fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))

    def since(self, before: ServingCounts | None) -> ServingCounts:
        """The increments since `before` (None, or a counter that went down: Triton restarted, so all of
        this series' values are new)."""
        if before is None or any(getattr(self, f.name) < getattr(before, f.name) for f in fields(self)):
            return ServingCounts(**{f.name: getattr(self, f.name) for f in fields(self)})
        return ServingCounts(**{f.name: getattr(self, f.name) - getattr(before, f.name) for f in fields(self)})


SeriesKey = tuple[str, str]  # (model, version)

_COUNTER_FIELDS = {
    "nv_inference_request_success": "successes",
    "nv_inference_request_duration_us": "request_us",
    "nv_inference_queue_duration_us": "queue_us",
}


def parse_triton_metrics(text: str) -> dict[SeriesKey, ServingCounts]:
    """Triton's exposition text -> the counters of every (model, version) it reports."""
    series: dict[SeriesKey, ServingCounts] = defaultdict(ServingCounts)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            model, version = sample.labels.get("model"), sample.labels.get("version", "")
            if model is None:
                continue
            counts = series[(model, version)]
            # the parser names a counter's samples with `_total` only where the text did: match both
            name = sample.name.removesuffix("_total")
            if name in _COUNTER_FIELDS:
                field = _COUNTER_FIELDS[name]
                setattr(counts, field, getattr(counts, field) + sample.value)
            elif name == "nv_inference_request_failure":
                if sample.labels.get("reason") == SHED_REASON:
                    counts.shed += sample.value
                else:
                    counts.failures += sample.value
    return dict(series)


def fetch_text(url: str, timeout_s: float = 2.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - the configured Triton
        return response.read().decode("utf-8", errors="replace")


class TritonFigures:
    """Follows Triton's counters for the deployment's cameras and exports their increments."""

    def __init__(self, url: str, cameras: Iterable[str], metrics: ControllerMetrics,
                 fetch: Callable[[str], str] = fetch_text) -> None:
        self.url = url
        self.cameras = list(cameras)
        self.metrics = metrics
        self._fetch = fetch
        self._last: dict[SeriesKey, ServingCounts] | None = None  # None: no baseline yet
        self._unreachable = False  # logged once per outage
        for camera in self.cameras:
            metrics.record_serving(camera, ServingCounts())  # every camera's series exist from the start

    def poll(self) -> dict[str, ServingCounts] | None:
        """One read of Triton's metrics; the increments per camera (None: Triton did not answer, or this
        was the baseline). Never raises: Triton down is the supervisor's news, not this job's."""
        try:
            current = parse_triton_metrics(self._fetch(self.url))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            if not self._unreachable:
                log.warning("Triton's metrics at %s unreadable (%s): per-camera serving figures paused",
                            self.url, exc)
            self._unreachable = True
            return None
        except Exception:  # a parser surprise must not take the scheduler job down
            log.exception("reading Triton's metrics at %s failed", self.url)
            return None
        if self._unreachable:
            log.info("Triton's metrics at %s readable again", self.url)
            self._unreachable = False
        last, self._last = self._last, current
        if last is None:
            return None
        increments: dict[str, ServingCounts] = {camera: ServingCounts() for camera in self.cameras}
        for (model, version), counts in current.items():
            if model in increments:
                increments[model].add(counts.since(last.get((model, version), ServingCounts())))
        for camera, delta in increments.items():
            self.metrics.record_serving(camera, delta)
        return increments
