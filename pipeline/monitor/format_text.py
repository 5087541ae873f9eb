"""The check as a short text summary for people: what was read, one block per
model version and time window with every distance, then the verdict."""
import datetime

from pipeline.monitor.report import MonitorReport, WindowReport


def _time(seconds: int | None) -> str:
    if seconds is None:
        return "the first record"
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S UTC")


def _window(window: WindowReport) -> list[str]:
    head = (f"{window.model_name} version {window.model_version}, "
            f"{_time(window.window_start)} + {(window.window_end - window.window_start) // 60} min: "
            f"{window.requests} requests, {window.examples} examples")
    if not window.judged:
        return [f"{head}: not judged ({window.reason})"]
    verdict = []
    if window.skewed_features:
        verdict.append("SKEW on " + ", ".join(window.skewed_features))
    if window.anomalies:
        verdict.append("ANOMALIES: " + "; ".join(
            f"{a.feature} ({a.short_description})" for a in window.anomalies))
    lines = [f"{head}: {' / '.join(verdict) or 'no skew'}"]
    lines.append(f"  {'feature':24s} {'distance':>8s} {'threshold':>9s}  comparator")
    for f in window.features:
        distance = "-" if f.distance is None else f"{f.distance:.3f}"
        mark = "  <- skew" if f.crossed else ""
        lines.append(f"  {f.feature:24s} {distance:>8s} {f.threshold:>9.3f}  {f.comparator}{mark}")
    return lines


def summary(report: MonitorReport) -> str:
    lines = [f"Request logs {report.request_logs}: {report.records_read} requests from "
             f"{_time(report.checked_from)} to {_time(report.checked_until)}, "
             f"{report.files_read} files read"]
    for skipped in report.skipped:
        lines.append(f"  skipped {skipped.file} from record {skipped.record_index}: {skipped.reason}")
    for window in report.windows:
        lines.extend(_window(window))
    if not report.windows:
        lines.append("No requests in this time range.")
    if report.unknown_versions:
        lines.append("Not in the metadata store, skipped: version "
                     + ", ".join(report.unknown_versions))
    lines.append("ALARM: training-serving skew or serving anomalies (above)." if report.alarm
                 else "No alarm.")
    if report.check_id is not None:
        lines.append(f"Recorded as ServingMonitor execution {report.check_id} in "
                     f"{report.metadata_store}.")
    return "\n".join(lines)
