"""How one model version has served, from the server's Prometheus page: its
requests, the failed ones, and its 99th percentile latency.

Reads TF Serving's per-version series (counts by status, latency histogram in
microseconds); counters start at zero when the server starts.
"""
import dataclasses
import math

from prometheus_client.parser import text_string_to_metric_families

REQUEST_COUNT = ":tensorflow:serving:request_count_by_version"
REQUEST_LATENCY = ":tensorflow:serving:request_latency_by_version"


@dataclasses.dataclass
class VersionHealth:
    model_name: str
    version: int
    requests: int
    failed: int  # every status but OK
    p99_ms: float | None  # upper bound of the histogram bucket; None: no requests

    @property
    def error_rate(self) -> float:
        return self.failed / self.requests if self.requests else 0.0

    def describe(self) -> str:
        """e.g. '240 requests, 0.4% failed, p99 12.9 ms'."""
        p99 = "-" if self.p99_ms is None else (
            "over the largest bucket" if math.isinf(self.p99_ms) else f"{self.p99_ms:.1f} ms")
        return (f"{self.requests} requests, {100 * self.error_rate:.1f}% failed, "
                f"p99 {p99}")


def _samples(page: str):
    for family in text_string_to_metric_families(page):
        yield from family.samples


def percentile_from_buckets(buckets: dict[float, float], fraction: float) -> float | None:
    """The smallest bucket bound under which `fraction` of the observations fall
    (cumulative counts by upper bound, as Prometheus `le` buckets)."""
    if not buckets:
        return None
    total = buckets.get(math.inf, max(buckets.values()))
    if total <= 0:
        return None
    for bound in sorted(buckets):
        if buckets[bound] >= fraction * total:
            return bound
    return math.inf


def version_health(page: str, model_name: str, version: int) -> VersionHealth:
    """The version's totals on the page (zeros if it served nothing yet)."""
    requests = failed = 0
    buckets: dict[float, float] = {}
    for sample in _samples(page):
        labels = sample.labels
        if labels.get("model_name") != model_name or labels.get("version") != str(version):
            continue
        if sample.name in (REQUEST_COUNT, REQUEST_COUNT + "_total"):
            requests += int(sample.value)
            if labels.get("status") != "OK":
                failed += int(sample.value)
        elif sample.name == REQUEST_LATENCY + "_bucket":
            # One series per API and entrypoint may share a bound: add them up.
            bound = float(labels["le"])
            buckets[bound] = buckets.get(bound, 0) + sample.value
    p99_micros = percentile_from_buckets(buckets, 0.99)
    return VersionHealth(model_name, version, requests, failed,
                         None if p99_micros is None else p99_micros / 1000)
