"""One automatic release decision (`release check`, the watcher's look): label a
loaded pending version as canary, judge the canary by its metrics and skew
alarms, promote or roll it back, then tidy.
"""
import dataclasses

from metadata import releases, serving_checks
from pipeline.release import canary_health, model_server, policy
from pipeline.release.actions import (Refused, Release, label_pending, no_release_yet,
                                      promote, rollback, tidy)
from pipeline.release.serving_config import CANARY, ServedVersions


def canary_skew_alarm(release: Release, served: ServedVersions) -> str | None:
    """A serving monitor alarm on the canary version since it became the canary."""
    pushed = serving_checks.pushed_model_of_version(release.store, str(served.canary))
    since = releases.label_since(release.history(), CANARY)
    if pushed is None or since is None:
        return None
    alarms = [w for w in serving_checks.checks_of_pushed_model(release.store, pushed.id)
              if w.alarm and w.created >= int(since.time)]
    if not alarms:
        return None
    features = sorted({f for w in alarms for f in w.skewed_features + w.anomalous_features})
    return f"check #{alarms[0].check_id} found {', '.join(features)}"


@dataclasses.dataclass
class CheckReport:
    lines: list[str]  # for people: what was done, or why nothing was
    changed: bool  # a label moved, a version was unloaded or deleted

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def check(release: Release, bounds: policy.Bounds) -> CheckReport:
    """One automatic look: label a loaded pending version, judge the canary,
    then tidy. Refused when the canary cannot be judged (no metrics page)."""
    labelled = label_pending(release, "pushed", timeout=0)
    report = CheckReport([labelled] if labelled else [],
                         changed=bool(labelled) and "is pending" not in labelled)
    _, served = release.read()
    if served.canary is not None and served.canary != served.stable:
        if release.metrics_url is None:
            raise Refused("Cannot judge the canary: no --serving-metrics-url.")
        try:
            page = model_server.prometheus_page(release.metrics_url)
        except model_server.ServerUnreachable as error:
            raise Refused(f"Cannot judge canary version {served.canary}: {error}") from None
        health = canary_health.version_health(page, release.model_name, served.canary)
        decision = policy.decide(health, bounds, canary_skew_alarm(release, served))
        if decision.action == policy.PROMOTE:
            report.lines.append(promote(release, f"automatic: {decision.reason}"))
        elif decision.action == policy.ROLLBACK:
            report.lines.append(rollback(release, f"automatic: {decision.reason}"))
        else:
            report.lines.append(decision.reason[0].upper() + decision.reason[1:] + ".")
        report.changed |= decision.action != policy.WAIT
    elif not report.lines:
        report.lines.append(no_release_yet(release) if served.stable is None else
                            f"No canary on trial: stable and canary are version {served.stable}.")
    tidied = tidy(release)
    if tidied:
        report.lines.append(tidied)
        report.changed = True
    return report
