"""The monitor's HTML page as a browser shows it: headless Chromium loads the
page from a file (no network) and the tests read the DOM it built: a chart per
compared feature with its threshold and crossings, tables holding the report's
numbers, earlier checks from ML Metadata as a trend, hostile names shown as text.
"""
import re
import subprocess
import sys
import time

import lxml.html
from ml_metadata.proto import metadata_store_pb2

from metadata import connection, serving_checks
from metadata.serving_checks import SkewResult
from pipeline.monitor import format_html
from pipeline.monitor.report import (FeatureSkew, MonitorReport, ServingAnomaly,
                                     SkippedRecords, WindowReport)
from tests.conftest import PROJECT_ROOT, make_spans
from tests.lineage.test_output_formats import chromium_dom

HOUR = 1704103200  # 2024-01-01T10:00:00Z
OLD, NEW = "1795776834", "1795780000"  # two pushed versions served side by side
# Comparators and thresholds as in pipeline/schema/schema.pbtxt.
COMPARED = {"fare": ("Jensen-Shannon", 0.3), "trip_miles": ("Jensen-Shannon", 0.5),
            "payment_type": ("L-infinity", 0.3), "company": ("L-infinity", 0.3)}
# Someone can name a feature, or a log file, to inject markup into the page.
HOSTILE = "<img src=x onerror=\"document.body.dataset.pwned='feature'\">"
HOSTILE_FILE = "<script>document.body.dataset.pwned='file'</script>.tfrecord"


def _distances(version: str, hour: int) -> dict[str, float]:
    """Distances of the kind real checks measure; the old version's fare
    crosses its threshold in the last hour (fares changed)."""
    drift = 0.004 * hour + (0.011 if version == NEW else 0.0)
    distances = {"fare": 0.041 + drift, "trip_miles": 0.067 + drift,
                 "payment_type": 0.052 + drift, "company": 0.118 + drift}
    if (version, hour) == (OLD, 2):
        distances["fare"] = 0.8312
    return distances


def sample_report() -> MonitorReport:
    windows = []
    for hour in range(3):
        for version in (OLD, NEW):
            features = [FeatureSkew(name, *COMPARED[name], distance)
                        for name, distance in _distances(version, hour).items()]
            anomalies = []
            if (version, hour) == (OLD, 2):
                anomalies.append(ServingAnomaly(
                    "payment_type", "Unexpected string values",
                    "Examples contain values missing from the schema: Crypto (~50% of the "
                    "examples)."))
            windows.append(WindowReport(
                "taxi_tips", version, HOUR + hour * 3600, HOUR + (hour + 1) * 3600,
                requests=20 + hour, examples=100 + hour, features=features,
                anomalies=anomalies, pushed_model_id=None))
    windows[0].features.append(FeatureSkew(HOSTILE, "L-infinity", 0.3, 0.125))
    windows.append(WindowReport("taxi_tips", "42", HOUR, HOUR + 3600, requests=3, examples=15,
                                judged=False, reason="no PushedModel with pushed_version 42"))
    return MonitorReport(
        request_logs="/var/log/taxi/requests", checked_from=HOUR,
        checked_until=HOUR + 3 * 3600, window_seconds=3600, files_read=4,
        records_read=sum(w.requests for w in windows),
        skipped=[SkippedRecords(f"/var/log/taxi/requests/{HOSTILE_FILE}", 24,
                                "unreadable from here on: truncated record at 38622")],
        windows=windows, check_id=None, metadata_store="sqlite:/tmp/metadata.sqlite")


def earlier_checks(store_path, report: MonitorReport) -> list[serving_checks.SkewRecord]:
    """Two earlier hours of the old version (and one of the hours the report
    covers again), recorded in a real ML Metadata store and read back as
    __main__ reads them."""
    store = connection.open_store(connection.sqlite_config(store_path))
    artifacts = []
    for type_name in ("PushedModel", "ExampleStatistics"):
        type_id = store.put_artifact_type(metadata_store_pb2.ArtifactType(name=type_name))
        artifacts.append(metadata_store_pb2.Artifact(
            type_id=type_id, uri=str(store_path.parent / type_name)))
    artifacts[0].custom_properties["pushed_version"].string_value = OLD  # as Pusher records it
    pushed_id, statistics_id = store.put_artifacts(artifacts)
    execution = serving_checks.start_check(store, "/var/log/taxi/requests", HOUR - 2 * 3600,
                                           HOUR + 3600, 60, 0)
    results = [SkewResult("taxi_tips", OLD, HOUR + hour * 3600, HOUR + (hour + 1) * 3600,
                          requests=18, examples=90,
                          distances={"fare": 0.05 + 0.01 * hour, "payment_type": 0.06},
                          thresholds={"fare": 0.3, "payment_type": 0.3},
                          skewed_features=[], anomalous_features=[],
                          pushed_model_id=pushed_id, training_statistics_id=statistics_id,
                          serving_statistics=b"")
               for hour in (-2, -1, 0)]
    serving_checks.finish_check(store, execution, results, store_path.parent)
    for window in report.windows:
        if window.model_version == OLD:
            window.pushed_model_id = pushed_id
    return serving_checks.checks_of_pushed_model(store, pushed_id)


def _text(element) -> str:
    return " ".join(element.text_content().split())


def _rows(table) -> list[dict[str, str]]:
    header = [_text(th) for th in table.xpath(".//th")]
    return [dict(zip(header, (_text(td) for td in row.xpath("./td"))), _cells=row.xpath("./td"),
                 _class=row.get("class") or "")
            for row in table.xpath(".//tr[td]")]


def _external_urls(page: str) -> list[str]:
    """http(s) URLs anywhere in the page but in SVG's namespace declarations."""
    without_namespaces = re.sub(r'xmlns(:\w+)?="[^"]*"', "", page)
    return re.findall(r"https?://[^\s\"'<>]*", without_namespaces)


def test_page_in_chromium_charts_every_feature_with_threshold_and_crossings(tmp_path):
    report = sample_report()
    history = earlier_checks(tmp_path / "metadata.sqlite", report)
    assert len(history) == 3
    page = tmp_path / "report.html"
    page.write_text(format_html.to_html(report, history))
    assert _external_urls(page.read_text()) == []

    dom = lxml.html.fromstring(chromium_dom(page, tmp_path / "profile"))

    # The hostile names are text on the page; their markup never ran.
    assert dom.xpath("//body/@data-pwned") == []
    assert len(dom.xpath("//script")) == 0 and dom.xpath("//img") == []
    assert HOSTILE_FILE in _text(dom.xpath("//table[@id='skipped']")[0])
    # Summary: the verdict, what was read, the version the store does not know.
    assert _text(dom.xpath("//*[@id='verdict']")[0]).startswith("ALARM")
    assert _text(dom.xpath("//*[@id='records-read']")[0]) == str(report.records_read)
    [unknown] = _rows(dom.xpath("//table[@id='unknown-versions']")[0])
    assert unknown["version"] == "42" and "no PushedModel" in unknown["reason"]
    [anomaly] = _rows(dom.xpath("//table[@id='anomalies']")[0])
    assert (anomaly["version"], anomaly["feature"], anomaly["window"]) == (
        OLD, "payment_type", "2024-01-01 12:00 UTC")

    sections = dom.xpath("//section[@class='feature']")
    compared = list(COMPARED) + [HOSTILE]
    assert [_text(s.xpath("./h3")[0]).rsplit(" (", 1)[0] for s in sections] == compared
    for n, (section, feature) in enumerate(zip(sections, compared)):
        assert section.get("data-feature") == feature
        [chart] = section.xpath(".//svg")
        assert chart.get("id") == f"chart-{n}"
        # The threshold is drawn once (one threshold per feature here).
        assert chart.xpath(f".//g[@id='chart-{n}-threshold-0']//path")
        assert not chart.xpath(f".//g[@id='chart-{n}-threshold-1']")
        points = [(w, f) for w in report.windows for f in w.features if f.feature == feature]
        crossings = [(w, f) for w, f in points if f.crossed]
        markers = chart.xpath(f".//g[@id='chart-{n}-crossed']//use")
        assert len(markers) == len(crossings)

        rows = _rows(section.xpath(".//table[@class='distances']")[0])
        this_check = [r for r in rows if r["from"] == "this check"]
        assert len(this_check) == len(points)
        for row, (window, skew) in zip(
                this_check, sorted(points, key=lambda p: (p[0].window_start, p[0].model_version))):
            assert row["version"] == window.model_version
            assert row["window start"] == format_html._time(window.window_start)
            assert row["distance"] == f"{skew.distance:.3f}"
            assert float(row["_cells"][3].get("data-value")) == skew.distance
            assert float(row["_cells"][4].get("data-value")) == skew.threshold
            assert (row["crossed"] == "above") == skew.crossed == ("crossed" in row["_class"])
        earlier = [r for r in rows if r["from"] != "this check"]
        # Earlier checks add only the hours this check did not cover again.
        if feature in ("fare", "payment_type"):
            assert [r["window start"] for r in earlier] == [
                "2024-01-01 08:00 UTC", "2024-01-01 09:00 UTC"]
            assert {r["from"] for r in earlier} == {f"check {history[0].check_id}"}
            assert chart.xpath(f".//g[@id='chart-{n}-series-0-earlier']")
        else:
            assert earlier == []
    fare_crossing = sections[0].xpath(".//tr[contains(@class, 'crossed')]")
    assert [_text(td) for td in fare_crossing[0].xpath("./td")][:4] == [
        OLD, "2024-01-01 12:00 UTC", "22", "0.831"]
    # The feature name in the chart's caption is text too.
    assert HOSTILE in _text(sections[-1].xpath(".//figcaption")[0])


def test_a_day_of_windows_for_every_feature_stays_small_and_quick():
    features = [f"feature_{i:02d}" for i in range(14)]
    windows = [WindowReport("taxi_tips", version, HOUR + hour * 3600, HOUR + (hour + 1) * 3600,
                            requests=40, examples=200,
                            features=[FeatureSkew(name, "Jensen-Shannon", 0.3,
                                                  0.02 + 0.013 * hour + 0.005 * i)
                                      for i, name in enumerate(features)])
               for hour in range(24) for version in (OLD, NEW)]
    report = MonitorReport("/logs", HOUR, HOUR + 24 * 3600, 3600, 24, 960, windows=windows)

    started = time.perf_counter()
    page = format_html.to_html(report)
    seconds = time.perf_counter() - started

    print(f"24 windows x 2 versions x 14 features: {len(page) / 1e6:.2f} MB in {seconds:.1f} s")
    assert len(page) < 2_000_000
    assert seconds < 30  # about 2 s alone on a laptop; the CI machine is shared
    assert page.count("<svg ") == 14
    assert page.count("<g id=\"chart-") >= 14
    assert _external_urls(page) == []


def test_the_command_writes_the_page(tmp_path):
    """`--format html -o` through the real command, on real trips logged for a
    version the (fresh) store does not know: reported, not judged, no alarm."""
    from tests.monitor import request_logs

    store_path = tmp_path / "metadata.sqlite"
    connection.open_store(connection.sqlite_config(store_path))
    make_spans(tmp_path / "data", 13, 13, rows=20)
    trips = request_logs.read_trips(tmp_path / "data" / "span-13" / "data.csv")
    request_logs.write_log_file(tmp_path / "logs", request_logs.replay(trips, "77", HOUR))
    page = tmp_path / "report.html"

    result = subprocess.run(
        [sys.executable, "-m", "pipeline.monitor", "--request-logs", str(tmp_path / "logs"),
         "--metadata_path", str(store_path), "--format", "html", "-o", str(page)],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)

    assert result.returncode == 0, result.stderr
    assert _external_urls(page.read_text()) == []
    dom = lxml.html.fromstring(chromium_dom(page, tmp_path / "profile"))
    assert _text(dom.xpath("//*[@id='verdict']")[0]) == "No alarm."
    [unknown] = _rows(dom.xpath("//table[@id='unknown-versions']")[0])
    assert unknown["version"] == "77" and unknown["requests"] == str(len(
        request_logs.replay(trips, "77", HOUR)))
    assert _text(dom.xpath("//title")[0]) == f"Serving skew: {(tmp_path / 'logs').resolve()}"
    assert dom.xpath("//section[@class='feature']") == []


def test_earlier_checks_chart_at_most_a_week_per_version():
    report = MonitorReport("/logs", HOUR, HOUR + 3600, 3600, 1, 20, windows=[WindowReport(
        "taxi_tips", OLD, HOUR, HOUR + 3600, 20, 100,
        features=[FeatureSkew("fare", "Jensen-Shannon", 0.3, 0.05)])])
    hours = 200
    history = [serving_checks.SkewRecord(
        artifact_id=hour, uri="", check_id=hour, created=HOUR - hour * 3600 + 3600,
        model_name="taxi_tips", model_version=OLD, window_start=HOUR - hour * 3600,
        window_end=HOUR - (hour - 1) * 3600, requests=20, skewed=False, skewed_features=[],
        anomalous_features=[], distances={"fare": 0.04}, thresholds={"fare": 0.3},
        pushed_model_id=1, serving_statistics_uri=None) for hour in range(1, hours + 1)]

    page = lxml.html.fromstring(format_html.to_html(report, history))

    rows = _rows(page.xpath("//table[@class='distances']")[0])
    earlier = [r for r in rows if r["from"] != "this check"]
    assert len(earlier) == format_html.EARLIER_WINDOWS_PER_VERSION < hours
    # The newest are kept: the hour just before this check's window is there.
    assert earlier[-1]["window start"] == "2024-01-01 09:00 UTC"
