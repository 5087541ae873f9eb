"""The check as JSON for programs. The shape (FORMAT_VERSION 1, described in
README.md, Monitoring) only grows: fields are added, never renamed or removed
without a new version. Times are epoch seconds; a distance TFDV could not
measure is null.
"""
import dataclasses
import json

from pipeline.monitor.report import FORMAT_VERSION, MonitorReport, WindowReport


def _window(window: WindowReport) -> dict:
    fields = dataclasses.asdict(window)
    fields["features"] = [dict(dataclasses.asdict(f), crossed=f.crossed) for f in window.features]
    fields.update(alarm=window.alarm, skewed_features=window.skewed_features,
                  anomalous_features=window.anomalous_features)
    return fields


def to_dict(report: MonitorReport) -> dict:
    fields = dataclasses.asdict(report)
    fields.update(format_version=FORMAT_VERSION, alarm=report.alarm,
                  files_skipped=report.files_skipped,
                  unknown_versions=report.unknown_versions,
                  windows=[_window(w) for w in report.windows])
    return fields


def dumps(report: MonitorReport) -> str:
    return json.dumps(to_dict(report), indent=2, sort_keys=True)
