"""The automatic decision on a canary: promote it, roll it back, or wait.

Pure: it judges what it is given (the canary's health on the server's
Prometheus page, a skew alarm of the serving monitor), so the same decision
is made by `release check`, by the watcher and in tests.
"""
import dataclasses

from pipeline.release.canary_health import VersionHealth

PROMOTE, ROLLBACK, WAIT = "promote", "rollback", "wait"


@dataclasses.dataclass(frozen=True)
class Bounds:
    min_requests: int
    max_error_rate: float
    max_p99_ms: float

    @classmethod
    def from_config(cls, cfg) -> "Bounds":
        return cls(cfg.canary_min_requests, cfg.canary_max_error_rate, cfg.canary_max_p99_ms)

    def describe(self) -> str:
        return (f"at least {self.min_requests} requests, at most "
                f"{100 * self.max_error_rate:g}% failed, p99 at most {self.max_p99_ms:g} ms")


@dataclasses.dataclass(frozen=True)
class Decision:
    action: str  # PROMOTE, ROLLBACK or WAIT
    reason: str


def decide(health: VersionHealth, bounds: Bounds, skew_alarm: str | None = None) -> Decision:
    """A skew alarm rolls back at once; the error rate and latency are judged
    only once the canary has served min_requests, since a few requests say
    little (one failure in three is no 33% error rate)."""
    served = f"canary version {health.version}: {health.describe()}"
    if skew_alarm:
        return Decision(ROLLBACK, f"{served}; serving skew alarm: {skew_alarm}")
    if health.requests < bounds.min_requests:
        return Decision(WAIT, f"{served}; waiting for {bounds.min_requests} requests")
    broken = []
    if health.error_rate > bounds.max_error_rate:
        broken.append(f"error rate above {100 * bounds.max_error_rate:g}%")
    if health.p99_ms is not None and health.p99_ms > bounds.max_p99_ms:
        broken.append(f"p99 above {bounds.max_p99_ms:g} ms")
    if broken:
        return Decision(ROLLBACK, f"{served}: {', '.join(broken)}")
    return Decision(PROMOTE, f"{served}, within bounds ({bounds.describe()})")
