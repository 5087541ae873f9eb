"""`model` shows what the served model served and whether it was skewed: the
serving monitor is run as a user runs it, on request logs written as the model
server writes them (real trips of a held-out span, replayed as PredictionLogs),
and the lineage tool reads back what it recorded in ML Metadata.
"""
import datetime
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT
from tests.monitor import request_logs

HOUR = 1704103200  # 2024-01-01T10:00:00Z, the start of a monitoring window


def monitor(store_copy, logs, *flags) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.monitor", "--request-logs", str(logs),
         "--metadata_path", str(store_copy.path), "--format", "json", *flags],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)


def local_time(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


@pytest.fixture(scope="module")
def held_out_trips(tmp_path_factory):
    return request_logs.held_out_trips(tmp_path_factory.mktemp("held_out"))


def test_model_shows_requests_served_and_skew_per_window(store_copy, tmp_path, held_out_trips):
    served = str(store_copy.cli_json("model")["model_trace"]["version"])
    logs = tmp_path / "request_logs"
    # 10:00-11:00 held-out trips as they are; 11:00-12:00 the same trips changed.
    clean = request_logs.replay(held_out_trips, served, HOUR)
    changed = request_logs.replay(request_logs.changed(held_out_trips), served, HOUR + 3600)
    request_logs.write_log_file(logs, clean, stamp="20240101T100000")
    request_logs.write_log_file(logs, changed, stamp="20240101T110000")
    check = monitor(store_copy, logs)
    assert check.returncode == 1, check.stderr  # the alarm

    text = store_copy.cli("model")

    total = len(clean) + len(changed)
    assert (f"served       {total} requests since {local_time(HOUR)} in 2 window(s)"
            in text), text
    assert "skew         on fare, payment_type  (in 1 of 2 window(s))" in text
    assert "anomalies    payment_type  (in 1 of 2 window(s))" in text
    newer, older = [line for line in text.splitlines()
                    if line.startswith(f"  {local_time(HOUR)[:10]}")]
    assert newer.startswith(f"  {local_time(HOUR + 3600)}") and "SKEW: fare " in newer
    assert f"{len(changed)} requests" in newer and "anomalies: payment_type" in newer
    assert older.startswith(f"  {local_time(HOUR)}") and older.endswith(
        f"{len(clean)} requests  no skew")

    trace = store_copy.cli_json("model")["model_trace"]
    windows = trace["serving"]
    assert [(w["window_start"], w["requests"], w["skewed_features"]) for w in windows] == [
        (HOUR + 3600, len(changed), ["fare", "payment_type"]), (HOUR, len(clean), [])]
    assert windows[0]["distances"]["fare"] > windows[0]["thresholds"]["fare"]
    assert windows[1]["anomalous_features"] == []

    # The same hours checked again: the newer check replaces the older one's
    # verdicts, the requests are not counted twice.
    again = monitor(store_copy, logs, "--since", "2024-01-01T10:00", "--until",
                    "2024-01-01T12:00")
    assert again.returncode == 1, again.stderr
    windows = store_copy.cli_json("model")["model_trace"]["serving"]
    assert [w["requests"] for w in windows] == [len(changed), len(clean)]
    assert windows[0]["check"] > trace["serving"][0]["check"]


def test_a_version_no_check_judged_says_so(store_copy, store):
    older = str(store.pushed_versions()[0])

    text = store_copy.cli("model", "--version", older)

    assert "no serving checks recorded for this version" in text
    assert store_copy.cli_json("model", "--version", older)["model_trace"]["serving"] == []
