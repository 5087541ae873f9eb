"""The check as Prometheus gauges in a file for node_exporter's textfile
collector. prometheus_client writes the exposition format and renames the file
into place, so the collector never reads half a file.
"""
import pathlib

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from pipeline.monitor.report import MonitorReport

DEFAULT_FILE = "serving_skew.prom"  # under <output_dir>/monitoring/


def write_metrics(report: MonitorReport, path: pathlib.Path):
    """Per model, version and feature, the distance and threshold of the
    version's newest judged window; an alarm per version and overall."""
    registry = CollectorRegistry()
    labels = ["model", "version", "feature"]
    distance = Gauge("serving_skew_distance", "Distance between serving and training "
                     "statistics (newest window of the version)", labels, registry=registry)
    threshold = Gauge("serving_skew_threshold", "Threshold of the feature's skew comparator",
                      labels, registry=registry)
    version_alarm = Gauge("serving_skew_version_alarm", "1: skew or serving anomalies in the "
                          "version's newest window", ["model", "version"], registry=registry)
    requests = Gauge("serving_monitor_requests", "Requests read by the last check, per version",
                     ["model", "version"], registry=registry)
    alarm = Gauge("serving_skew_alarm", "1: the last check found skew or serving anomalies",
                  registry=registry)
    checked = Gauge("serving_monitor_checked_until_seconds",
                    "End of the time range of the last check (epoch seconds)", registry=registry)
    skipped = Gauge("serving_monitor_files_skipped", "Log files with unreadable records in the "
                    "last check", registry=registry)
    newest = {}
    for window in report.windows:
        key = (window.model_name, window.model_version)
        requests.labels(*key).inc(window.requests)
        if window.judged:
            newest[key] = window  # windows come oldest first
    for (model, version), window in newest.items():
        version_alarm.labels(model, version).set(int(window.alarm))
        for feature in window.features:
            threshold.labels(model, version, feature.feature).set(feature.threshold)
            if feature.distance is not None:
                distance.labels(model, version, feature.feature).set(feature.distance)
    alarm.set(int(report.alarm))
    checked.set(report.checked_until)
    skipped.set(report.files_skipped)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)
