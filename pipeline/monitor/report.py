"""The data a serving check reports, as plain dataclasses: the text and JSON
formatters (and an HTML one later) render these and compute nothing, so every
output tells the same story.
"""
import dataclasses

# Bumped when a field is renamed or removed (adding one is compatible).
FORMAT_VERSION = 1


@dataclasses.dataclass
class FeatureSkew:
    """One feature's distance between serving and training statistics."""
    feature: str
    comparator: str  # "L-infinity" or "Jensen-Shannon"
    threshold: float
    distance: float | None  # None: TFDV measured nothing (feature absent on one side)

    @property
    def crossed(self) -> bool:
        return self.distance is not None and self.distance > self.threshold


@dataclasses.dataclass
class ServingAnomaly:
    """A schema anomaly of the serving statistics (environment SERVING)."""
    feature: str
    short_description: str
    description: str


@dataclasses.dataclass
class WindowReport:
    """The requests one model version served in one time window, judged
    against that version's training data."""
    model_name: str
    model_version: str
    window_start: int  # epoch seconds, inclusive
    window_end: int  # epoch seconds, exclusive
    requests: int
    examples: int  # rows: a batched request holds several
    # Not judged: the version has no record in the store (then `reason` says so).
    judged: bool = True
    reason: str = ""
    features: list[FeatureSkew] = dataclasses.field(default_factory=list)
    anomalies: list[ServingAnomaly] = dataclasses.field(default_factory=list)
    pushed_model_id: int | None = None
    training_statistics_uri: str = ""

    @property
    def skewed_features(self) -> list[str]:
        return [f.feature for f in self.features if f.crossed]

    @property
    def anomalous_features(self) -> list[str]:
        return sorted({a.feature for a in self.anomalies})

    @property
    def alarm(self) -> bool:
        return bool(self.skewed_features or self.anomalies)


@dataclasses.dataclass
class SkippedRecords:
    """A file, or the rest of one, that could not be read."""
    file: str
    record_index: int  # the first record not read (0: nothing of the file)
    reason: str


@dataclasses.dataclass
class MonitorReport:
    request_logs: str
    checked_from: int | None  # epoch seconds; None: from the first record
    checked_until: int
    window_seconds: int
    files_read: int
    records_read: int  # PredictionLogs in the time range
    skipped: list[SkippedRecords] = dataclasses.field(default_factory=list)
    windows: list[WindowReport] = dataclasses.field(default_factory=list)
    check_id: int | None = None  # the ServingMonitor execution
    metadata_store: str = ""

    @property
    def files_skipped(self) -> int:
        """Files with at least one record that could not be read."""
        return len({s.file for s in self.skipped})

    @property
    def alarm(self) -> bool:
        return any(w.alarm for w in self.windows)

    @property
    def unknown_versions(self) -> list[str]:
        return sorted({w.model_version for w in self.windows if not w.judged})
