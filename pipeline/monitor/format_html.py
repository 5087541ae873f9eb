"""The check as one self-contained HTML page for people who would rather look:
a summary, then per feature a chart of its distance over time (a point per
window, a series per model version, the threshold as a line, crossings marked)
above a table of the same numbers. No network: charts are inline SVG drawn by
matplotlib; everything that comes from data is escaped.
"""
import dataclasses
import datetime
import html
import io
import re
from typing import Iterable

# Figure without pyplot: matplotlib lays out with Agg and writes with its SVG
# backend, no display backend ever loads, and the process-wide backend (a
# notebook's, say) is left as the caller set it.
import matplotlib
from matplotlib import dates as mdates
from matplotlib.figure import Figure

from metadata.serving_checks import SkewRecord
from pipeline.monitor.report import MonitorReport, WindowReport

# Text stays text (small, selectable, no glyph outlines); "$" in a label is not
# maths; a fixed salt makes the same report give the same page.
_RC = {"svg.fonttype": "none", "text.parse_math": False, "svg.hashsalt": "serving-monitor",
       "font.size": 9, "path.simplify": True}
_COLOURS = matplotlib.colormaps["tab10"].colors
_CROSSED_COLOUR = "#dc2626"
# Earlier windows charted per version: a week of hourly checks, enough for a
# trend; beyond it the page grows without telling more.
EARLIER_WINDOWS_PER_VERSION = 168
_SVG_START = re.compile(r"<svg\b")
_SVG_ID = re.compile(r'(\bid="|href="#|url\(#)([^")]+)')

_STYLE = """
body { font-family: sans-serif; color: #111827; margin: 16px auto; max-width: 980px;
       padding: 0 12px; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
h3 { font-size: 14px; margin: 20px 0 4px; }
.verdict { padding: 8px 12px; border-radius: 4px; font-weight: bold; }
.verdict.alarm { background: #fee2e2; color: #991b1b; }
.verdict.ok { background: #dcfce7; color: #166534; }
table { border-collapse: collapse; font-size: 12px; margin: 4px 0 12px; }
th, td { border-bottom: 1px solid #e5e7eb; padding: 2px 8px; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
tr.crossed td { color: #991b1b; font-weight: bold; }
tr.earlier td { color: #6b7280; }
figure { margin: 0; } figure svg { max-width: 100%; height: auto; }
figcaption { font-size: 11px; color: #4b5563; }
dl.summary { display: grid; grid-template-columns: max-content auto; gap: 2px 12px;
             font-size: 13px; }
dl.summary dt { font-weight: bold; }
"""


@dataclasses.dataclass(frozen=True)
class _Point:
    """One feature's distance in one window, from this check or an earlier one."""
    model_version: str
    window_start: int
    window_end: int
    requests: int
    distance: float | None
    threshold: float
    check_id: int | None
    this_check: bool

    @property
    def crossed(self) -> bool:
        return self.distance is not None and self.distance > self.threshold


def _time(seconds: int | None) -> str:
    if seconds is None:
        return "the first record"
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M UTC")


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _points_by_feature(report: MonitorReport,
                       history: Iterable[SkewRecord]) -> dict[str, list[_Point]]:
    """Every compared feature of this check, with its points: this check's
    windows, then earlier windows of the same versions that this check did not
    cover again (the newest record of a window wins)."""
    points: dict[str, list[_Point]] = {}
    covered = set()
    for window in report.windows:
        covered.add((window.model_version, window.window_start))
        for skew in window.features:
            points.setdefault(skew.feature, []).append(_Point(
                window.model_version, window.window_start, window.window_end,
                window.requests, skew.distance, skew.threshold, report.check_id, True))
    newest_first = sorted(history, key=lambda r: (r.created, r.check_id, r.window_start),
                          reverse=True)
    earlier_windows: dict[str, int] = {}
    for record in newest_first:
        key = (record.model_version, record.window_start)
        if (key in covered or record.check_id == report.check_id
                or earlier_windows.get(record.model_version, 0) >= EARLIER_WINDOWS_PER_VERSION):
            continue
        covered.add(key)
        earlier_windows[record.model_version] = earlier_windows.get(record.model_version, 0) + 1
        for feature, distance in record.distances.items():
            if feature in points and feature in record.thresholds:
                points[feature].append(_Point(
                    record.model_version, record.window_start, record.window_end,
                    record.requests, distance, record.thresholds[feature],
                    record.check_id, False))
    for feature_points in points.values():
        feature_points.sort(key=lambda p: (p.window_start, p.model_version))
    return points


def _utc(seconds: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)


def _chart_svg(chart_id: str, points: list[_Point], colours: dict[str, str],
               time_range: tuple[int, int]) -> str:
    """The feature's distances over time as inline SVG. Element ids carry
    `chart_id` so that several charts live in one page: the threshold lines are
    `<chart_id>-threshold-<n>`, the crossing markers are in `<chart_id>-crossed`."""
    with matplotlib.rc_context(_RC):
        figure = Figure(figsize=(7.5, 2.6), layout="constrained")
        axes = figure.subplots()
        for v, version in enumerate(sorted({p.model_version for p in points})):
            for this_check in (False, True):
                series = [p for p in points if p.model_version == version
                          and p.this_check == this_check]
                if not series:
                    continue
                label = f"version {version}" + ("" if this_check else " (earlier checks)")
                axes.plot([_utc((p.window_start + p.window_end) // 2) for p in series],
                          [float("nan") if p.distance is None else p.distance for p in series],
                          marker="o", linestyle="-" if this_check else ":",
                          color=colours[version], label=label,
                          markerfacecolor=colours[version] if this_check else "white",
                          gid=f"series-{v}-{'this' if this_check else 'earlier'}")
        for n, threshold in enumerate(sorted({p.threshold for p in points})):
            axes.axhline(threshold, color="#374151", linestyle="--", linewidth=1,
                         label="threshold" if n == 0 else None, gid=f"threshold-{n}")
        crossed = [p for p in points if p.crossed]
        if crossed:
            axes.plot([_utc((p.window_start + p.window_end) // 2) for p in crossed],
                      [p.distance for p in crossed], linestyle="none", marker="X",
                      markersize=10, color=_CROSSED_COLOUR, label="above threshold",
                      gid="crossed")
        top = max([p.threshold for p in points]
                  + [p.distance for p in points if p.distance is not None])
        axes.set_ylim(0, top * 1.15 or 1)
        axes.set_ylabel("distance")
        # Every chart spans the same windows, so that charts stacked on the page line up.
        axes.set_xlim(_utc(time_range[0]), _utc(time_range[1]))
        locator = mdates.AutoDateLocator()
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        axes.grid(True, color="#e5e7eb", linewidth=0.6)
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={
            "Date": None, "Creator": None, "Format": None, "Type": None})
    svg = buffer.getvalue()
    # Drop the XML prologue (its DOCTYPE names a DTD by URL); inline SVG needs none.
    svg = svg[_SVG_START.search(svg).start():]
    svg = _SVG_ID.sub(lambda m: f"{m.group(1)}{chart_id}-{m.group(2)}", svg)
    return svg.replace("<svg ", f'<svg id="{chart_id}" role="img" '
                       f'aria-labelledby="{chart_id}-caption" ', 1)


def _summary(report: MonitorReport) -> str:
    verdict = ('<p class="verdict alarm" id="verdict">ALARM: training–serving skew or '
               'serving anomalies (below).</p>' if report.alarm
               else '<p class="verdict ok" id="verdict">No alarm.</p>')
    versions: dict[str, int] = {}
    for window in report.windows:
        versions[window.model_version] = versions.get(window.model_version, 0) + window.requests
    rows = [("Request logs", _esc(report.request_logs)),
            ("Checked", f"{_esc(_time(report.checked_from))} to "
                        f"{_esc(_time(report.checked_until))}, windows of "
                        f"{report.window_seconds // 60} min"),
            ("Requests", f'<span id="records-read">{report.records_read}</span> in '
                         f"{report.files_read} files"),
            ("Model versions", ", ".join(
                f"{_esc(v)} ({n} requests)" for v, n in sorted(versions.items())) or "none"),
            ("Files skipped", f'<span id="files-skipped">{report.files_skipped}</span>')]
    if report.check_id is not None:
        rows.append(("Recorded", f"ServingMonitor execution {report.check_id} in "
                                 f"{_esc(report.metadata_store)}"))
    parts = [verdict, '<dl class="summary">']
    parts += [f"<dt>{name}</dt><dd>{value}</dd>" for name, value in rows]
    parts.append("</dl>")
    if report.skipped:
        parts.append('<table id="skipped"><caption>Skipped (could not be read)</caption>'
                     "<tr><th>file</th><th>from record</th><th>reason</th></tr>")
        parts += [f'<tr><td>{_esc(s.file)}</td><td class="number">{s.record_index}</td>'
                  f"<td>{_esc(s.reason)}</td></tr>" for s in report.skipped]
        parts.append("</table>")
    unknown = [w for w in report.windows if not w.judged]
    if unknown:
        parts.append('<table id="unknown-versions"><caption>Not judged</caption>'
                     "<tr><th>version</th><th>window</th><th>requests</th><th>reason</th></tr>")
        parts += [f"<tr><td>{_esc(w.model_version)}</td><td>{_esc(_time(w.window_start))}</td>"
                  f'<td class="number">{w.requests}</td><td>{_esc(w.reason)}</td></tr>'
                  for w in unknown]
        parts.append("</table>")
    if not report.windows:
        parts.append("<p>No requests in this time range.</p>")
    return "\n".join(parts)


def _anomalies(windows: list[WindowReport]) -> str:
    anomalous = [w for w in windows if w.anomalies]
    if not anomalous:
        return '<h2>Serving anomalies</h2><p id="anomalies">None.</p>'
    parts = ['<h2>Serving anomalies</h2><table id="anomalies"><tr><th>version</th>'
             "<th>window</th><th>feature</th><th>anomaly</th><th>description</th></tr>"]
    parts += [f"<tr><td>{_esc(w.model_version)}</td><td>{_esc(_time(w.window_start))}</td>"
              f"<td>{_esc(a.feature)}</td><td>{_esc(a.short_description)}</td>"
              f"<td>{_esc(a.description)}</td></tr>"
              for w in anomalous for a in w.anomalies]
    parts.append("</table>")
    return "\n".join(parts)


def _feature_section(n: int, feature: str, comparator: str, points: list[_Point],
                     colours: dict[str, str], time_range: tuple[int, int]) -> str:
    chart_id = f"chart-{n}"
    crossed = sum(p.crossed for p in points)
    earlier = sum(not p.this_check for p in points)
    caption = (f"{_esc(feature)}: {_esc(comparator)} distance per window and model version; "
               f"dashed line: threshold; ✕: above it ({crossed} windows). "
               + (f"{earlier} earlier windows from previous checks (hollow, dotted)."
                  if earlier else "Only this check's windows."))
    rows = []
    for p in points:
        source = "this check" if p.this_check else f"check {p.check_id}"
        classes = " ".join(c for c, on in (("crossed", p.crossed), ("earlier", not p.this_check))
                           if on)
        distance_value = "" if p.distance is None else repr(p.distance)
        rows.append(
            f'<tr class="{classes}"><td>{_esc(p.model_version)}</td>'
            f"<td>{_esc(_time(p.window_start))}</td>"
            f'<td class="number">{p.requests}</td>'
            f'<td class="number distance" data-value="{distance_value}">{_number(p.distance)}</td>'
            f'<td class="number threshold" data-value="{p.threshold!r}">{_number(p.threshold)}</td>'
            f"<td>{'above' if p.crossed else ''}</td><td>{source}</td></tr>")
    return f"""<section class="feature" id="feature-{n}" data-feature="{_esc(feature)}">
<h3>{_esc(feature)} <small>({_esc(comparator)})</small></h3>
<figure class="chart">{_chart_svg(chart_id, points, colours, time_range)}
<figcaption id="{chart_id}-caption">{caption}</figcaption></figure>
<table class="distances"><tr><th>version</th><th>window start</th><th>requests</th>
<th>distance</th><th>threshold</th><th>crossed</th><th>from</th></tr>
{"".join(rows)}</table>
</section>"""


def to_html(report: MonitorReport, history: Iterable[SkewRecord] = ()) -> str:
    """The page. `history`: ServingSkew records of earlier checks of the same
    versions (serving_checks.checks_of_pushed_model), charted as the trend
    before this check; this function reads no store."""
    points = _points_by_feature(report, history)
    comparators = {f.feature: f.comparator for w in report.windows for f in w.features}
    versions = sorted({p.model_version for ps in points.values() for p in ps})
    colours = {v: _COLOURS[i % len(_COLOURS)] for i, v in enumerate(versions)}
    every_point = [p for feature_points in points.values() for p in feature_points]
    time_range = (min((p.window_start for p in every_point), default=0),
                  max((p.window_end for p in every_point), default=0))
    sections = [_feature_section(n, feature, comparators[feature], feature_points, colours,
                                 time_range)
                for n, (feature, feature_points) in enumerate(points.items())]
    title = f"Serving skew: {report.request_logs}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{_esc(title)}</title>
<style>{_STYLE}</style></head>
<body>
<h1>Training–serving skew</h1>
{_summary(report)}
{_anomalies(report.windows)}
<h2>Distances per feature</h2>
{"".join(sections) or "<p>No feature was compared.</p>"}
</body></html>
"""
