"""Which serving skew alarm, if any, should retrain the served model
(`--retrain-on skew`).

The serving monitor records its checks in ML Metadata (metadata/serving_checks.py);
a run triggered by one records the check's id on its context. So "has this
alarm been acted on" is a question to the store, and a restarted watcher, or a
cron job, never retrains twice for the same alarm.
"""
import dataclasses
import datetime

from metadata import runs, serving_checks
from pipeline.triggers import Trigger

# On the context of a run triggered by skew: the ServingMonitor execution whose
# alarm started it. Runs act on alarms of newer checks only.
SKEW_CHECK = "skew_check"


@dataclasses.dataclass
class SkewAlarm:
    """The alarm windows of one check of the served version."""
    version: str
    check_id: int
    windows: list[serving_checks.SkewRecord]

    @property
    def skewed_features(self) -> list[str]:
        return list(dict.fromkeys(f for w in self.windows for f in w.skewed_features))

    @property
    def anomalous_features(self) -> list[str]:
        return list(dict.fromkeys(f for w in self.windows for f in w.anomalous_features))

    def describe(self) -> str:
        """e.g. 'skew: fare, payment_type; anomalies: payment_type (version 17..,
        check #59, 1 window from 2024-01-01T11:00Z)'."""
        found = []
        if self.skewed_features:
            found.append("skew: " + ", ".join(self.skewed_features))
        if self.anomalous_features:
            found.append("anomalies: " + ", ".join(self.anomalous_features))
        first = datetime.datetime.fromtimestamp(
            min(w.window_start for w in self.windows), datetime.timezone.utc)
        return (f"{'; '.join(found)} (version {self.version}, check #{self.check_id}, "
                f"{len(self.windows)} window(s) from {first:%Y-%m-%dT%H:%MZ})")


def served_version(store: runs.Store) -> str | None:
    """The newest pushed version: the one TF Serving loads."""
    versions = [v for v in runs.pushed_versions(store) if v]
    return max(versions, key=lambda v: (int(v) if v.isdigit() else -1, v)) if versions else None


def last_acted_on_check(store: runs.Store) -> int:
    """The newest check whose alarm a run acted on (0: none). A run that was
    stopped or abandoned did not act: its alarm is due again, as its span would be."""
    acted = [runs.run_properties(context).get(SKEW_CHECK, 0)
             for context in runs.all_runs(store)
             if runs.run_properties(context).get(runs.OUTCOME) in runs.FINAL_OUTCOMES]
    return max(acted, default=0)


def unhandled_alarm(store: runs.Store) -> SkewAlarm | None:
    """The newest check that judged the served version and raised an alarm,
    if it is newer than the version's push and than the last alarm acted on."""
    version = served_version(store)
    pushed = serving_checks.pushed_model_of_version(store, version) if version else None
    if pushed is None:
        return None
    pushed_at = pushed.create_time_since_epoch // 1000
    newer_than = last_acted_on_check(store)
    alarms = [w for w in serving_checks.checks_of_pushed_model(store, pushed.id)
              if w.alarm and w.check_id > newer_than and w.created >= pushed_at]
    if not alarms:
        return None
    newest_check = max(w.check_id for w in alarms)
    return SkewAlarm(version, newest_check,
                     sorted((w for w in alarms if w.check_id == newest_check),
                            key=lambda w: w.window_start))


def trigger_for(alarm: SkewAlarm, span: int) -> Trigger:
    """A run that retrains on `span`, the newest data there is."""
    return Trigger("skew", span, detail=alarm.describe(), skew_check=alarm.check_id)
