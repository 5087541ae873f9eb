"""The watcher's look at the model server's request logs (`--request-logs`):
the serving monitor's own check, run in-process, so that one process judges
what was served and retrains on a skew alarm.

Only windows that are over are judged, each once: a check every minute would
judge slivers of an hour, too few requests for a distance to mean anything.
"""
import pathlib
import time

from metadata import connection, serving_checks
from pipeline import config as pipeline_config
from pipeline import progress, run_lock


def _last_finished_window_end(window_seconds: int, now: float) -> int:
    return int(now) // window_seconds * window_seconds


def _alarm_text(window) -> str:
    found = []
    if window.skewed_features:
        found.append("skew on " + ", ".join(window.skewed_features))
    if window.anomalous_features:
        found.append("anomalies in " + ", ".join(window.anomalous_features))
    return f"version {window.model_version}: {', '.join(found)}"


def _summary(report) -> str:
    """One line for people; the monitor's report formats have the rest."""
    alarms = "; ".join(_alarm_text(w) for w in report.windows if w.alarm)
    return (f"Serving check #{report.check_id}: {report.records_read} request(s) in "
            f"{len(report.windows)} window(s); " + (f"ALARM: {alarms}" if alarms else "no alarm"))


def check_finished_windows(cfg: pipeline_config.PipelineConfig, out) -> None:
    """Judges the request logs from where the last check of them stopped to
    the end of the last finished window, if that is new; records the check in
    ML Metadata and the Prometheus file as `python -m pipeline.monitor` does."""
    config = cfg.metadata_connection
    if not connection.exists(config) or not cfg.request_logs.is_dir():
        return  # nothing served yet, or no server has logged
    window = int(cfg.serving_window_seconds)
    logs = cfg.request_logs.resolve()
    until = _last_finished_window_end(window, time.time())
    # The monitor's own default start, read without loading TensorFlow.
    since = serving_checks.resume_point(connection.open_reader(config), str(logs))
    if since is not None and since >= until:
        return
    report, error = None, None
    # TensorFlow's and TFDV's console output goes to the log file, as a run's does.
    with progress.logs_to_file(cfg.log_path, progress.ProgressPrinter(out)):
        import tensorflow_data_validation as tfdv
        from pipeline.monitor import check, prometheus

        try:
            with run_lock.hold_for_store(cfg, run_lock.RUN_LOCK, "serving check", wait=True):
                schema = tfdv.load_schema_text(str(cfg.schema_file))
                report = check.run_check(connection.open_store(config), logs, since, until,
                                         window, schema, cfg.output_dir)
            prometheus.write_metrics(report, pathlib.Path(
                serving_checks.monitoring_dir(cfg.output_dir), prometheus.DEFAULT_FILE))
        except Exception as exc:  # a bad log folder must not stop the watcher
            error = exc
    print(f"Serving check of {logs} failed: {error}" if error else _summary(report),
          file=out, flush=True)
