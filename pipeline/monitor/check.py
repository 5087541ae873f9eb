"""One serving check: the request logs of a time range, grouped by model
version and time window, each group judged against the training data of the
version that served it (found through ML Metadata lineage), and recorded.
"""
import collections
import logging
import pathlib

from ml_metadata.metadata_store import metadata_store
from tensorflow_metadata.proto.v0 import schema_pb2

from metadata import serving_checks
from pipeline.components import served_model
from pipeline.components.drift_check import training_window_statistics
from pipeline.monitor import request_logs, skew, statistics
from pipeline.monitor.report import MonitorReport, WindowReport

logger = logging.getLogger(__name__)


def _training_statistics(store, pushed_model_id: int):
    """Transform's pre_transform_stats of the model's training window."""
    found = served_model.walk(store, pushed_model_id, served_model.TO_TRAINING_WINDOW_STATISTICS)
    if not found:
        return None
    [artifact] = store.get_artifacts_by_id([max(found)])
    return artifact


def _judge(store, schema, window: WindowReport, examples: list[bytes]):
    """Fills in the window's distances and anomalies; returns what to record
    (None when the window cannot be judged, saying why in the report)."""
    pushed = serving_checks.pushed_model_of_version(store, window.model_version)
    if pushed is None:
        window.judged, window.reason = False, "no PushedModel of this version in the metadata store"
        return None
    window.pushed_model_id = pushed.id
    training_artifact = _training_statistics(store, pushed.id)
    if training_artifact is None:
        window.judged, window.reason = False, "no training statistics in this version's lineage"
        return None
    window.training_statistics_uri = training_artifact.uri
    try:
        training = training_window_statistics(training_artifact)
        serving = statistics.statistics_of(examples)
    except (OSError, ValueError, RuntimeError) as error:
        # e.g. one feature logged as int in one request and float in another.
        window.judged, window.reason = False, f"no statistics: {error}"
        return None
    window.features = skew.feature_skews(training, serving, schema)
    window.anomalies = skew.serving_anomalies(serving, schema)
    return serving_checks.SkewResult(
        model_name=window.model_name, model_version=window.model_version,
        window_start=window.window_start, window_end=window.window_end,
        requests=window.requests, examples=window.examples,
        distances={f.feature: f.distance for f in window.features if f.distance is not None},
        thresholds={f.feature: f.threshold for f in window.features},
        skewed_features=window.skewed_features, anomalous_features=window.anomalous_features,
        pushed_model_id=pushed.id, training_statistics_id=training_artifact.id,
        serving_statistics=serving.SerializeToString(),
        details={"features": [dict(vars(f), crossed=f.crossed) for f in window.features],
                 "anomalies": [vars(a) for a in window.anomalies]})


def run_check(store: metadata_store.MetadataStore, logs: pathlib.Path,
              since: int | None, until: int, window_seconds: int,
              schema: schema_pb2.Schema, output_dir: pathlib.Path,
              record: bool = True) -> MonitorReport:
    """Reads [since, until) of the logs, judges each (version, window) group,
    and records the check in ML Metadata (files under <output_dir>/monitoring)."""
    read = request_logs.read_requests(logs, since, until)
    groups = collections.defaultdict(list)
    for request in read.requests:
        start = int(request.timestamp) // window_seconds * window_seconds
        groups[request.model_name, request.model_version, start].append(request)

    report = MonitorReport(request_logs=str(logs), checked_from=since, checked_until=until,
                           window_seconds=window_seconds, files_read=read.files_read,
                           records_read=len(read.requests), skipped=read.skipped)
    results = []
    for (name, version, start), requests in sorted(groups.items(), key=lambda g: (g[0][1], g[0][2], g[0][0])):
        examples = [e for r in requests for e in r.examples]
        window = WindowReport(model_name=name, model_version=version, window_start=start,
                              window_end=start + window_seconds, requests=len(requests),
                              examples=len(examples))
        report.windows.append(window)
        if not examples:
            window.judged, window.reason = False, "the requests held no examples"
            continue
        result = _judge(store, schema, window, examples)
        if result is not None:
            results.append(result)
        else:
            logger.warning("version %s, window from %d: not judged: %s",
                           version, start, window.reason)
    if record:
        checked_from = since if since is not None else min(
            (int(r.timestamp) for r in read.requests), default=until)
        execution = serving_checks.start_check(store, str(logs), checked_from, until,
                                               report.records_read, report.files_skipped)
        report.check_id = serving_checks.finish_check(store, execution, results, output_dir)
    return report
