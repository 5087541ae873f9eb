"""`--retrain-on skew` as a user runs it: the serving monitor judges request
logs written as the model server writes them (real trips of a held-out span),
and a skew alarm of the served model retrains it, once per alarm, on a copy of
the shared pipeline store.
"""
import pathlib
import subprocess
import sys
import time

import pytest

from metadata import connection, serving_checks
from tests.conftest import PROJECT_ROOT, copy_store
from tests.continuous.conftest import (Store, Watcher, pipeline_command, python_env,
                                       serving_versions, wait_for)
from tests.monitor import request_logs

HOUR = 1704103200  # 2024-01-01T10:00:00Z


class Loop:
    def __init__(self, root: pathlib.Path, pipeline_runs):
        self.data_dir, self.output_dir = copy_store(pipeline_runs, root)
        self.root = root
        self.store = Store(self.output_dir)
        self.trips = request_logs.held_out_trips(root / "held_out")

    def served(self) -> str:
        return serving_versions(self.output_dir)[-1]

    def write_logs(self, folder: str, version: str, skew: bool) -> pathlib.Path:
        logs = self.root / folder
        request_logs.write_log_file(logs, request_logs.replay(self.trips, version, HOUR))
        if skew:
            request_logs.write_log_file(logs, request_logs.replay(
                request_logs.changed(self.trips), version, HOUR + 3600), stamp="20240101T110000")
        return logs

    def monitor(self, logs) -> int:
        return subprocess.run(
            [sys.executable, "-m", "pipeline.monitor", "--request-logs", str(logs),
             "--metadata_path", str(self.output_dir / "metadata.sqlite")],
            capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120).returncode

    def one_pass(self, *flags) -> subprocess.CompletedProcess:
        return subprocess.run(pipeline_command(self.data_dir, self.output_dir,
                                               "--retrain-on", "skew", *flags),
                              capture_output=True, text=True, cwd=PROJECT_ROOT,
                              env=python_env(), timeout=900)

    def skew_runs(self) -> list[dict]:
        return [r for r in self.store.runs() if r.get("trigger") == "skew"]

    def latest_check(self, logs):
        reader = connection.open_reader(connection.sqlite_config(
            self.output_dir / "metadata.sqlite"))
        return serving_checks.latest_check(reader, str(logs.resolve()))


@pytest.fixture(scope="module")
def loop(tmp_path_factory, pipeline_runs) -> Loop:
    return Loop(tmp_path_factory.mktemp("skew"), pipeline_runs)


def test_no_alarm_runs_nothing(loop):
    assert loop.monitor(loop.write_logs("clean_logs", loop.served(), skew=False)) == 0
    runs_before = loop.store.runs()

    result = loop.one_pass()

    assert result.returncode == 0, result.stdout + result.stderr
    assert "No serving skew alarm to act on" in result.stdout
    assert loop.store.runs() == runs_before


def test_watcher_judges_the_request_logs_and_retrains_once_on_the_alarm(loop):
    served = loop.served()
    logs = loop.write_logs("request_logs", served, skew=True)
    watcher = Watcher(loop.data_dir, loop.output_dir, "--retrain-on", "skew",
                      "--request-logs", str(logs), log_name="skew_watcher.log")
    try:
        [run] = wait_for(lambda: [r for r in loop.skew_runs() if r.get("outcome")],
                         what="a run triggered by skew", process=watcher.process)
        time.sleep(5)  # five more looks at the store: the same alarm runs nothing
        assert len(loop.skew_runs()) == 1
    finally:
        assert watcher.stop() == 0, watcher.output()

    check = loop.latest_check(logs)
    assert check.alarm and run["skew_check"] == check.execution_id
    assert run["trigger_detail"].startswith(
        f"skew: fare, payment_type; anomalies: payment_type (version {served}, "
        f"check #{check.execution_id}"), run
    assert run["outcome"] == "pushed" and run["executions"]["Trainer"] == "COMPLETE"
    new_version = loop.served()
    assert new_version != served and new_version in loop.store.pushed_versions()
    assert f"Serving check #{check.execution_id}: " in watcher.output()
    assert "ALARM: version" in watcher.output()
    # What a user reads back.
    runs_table = subprocess.run(
        [sys.executable, "-m", "pipeline.lineage", "--metadata_path",
         str(loop.output_dir / "metadata.sqlite"), "runs"],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120).stdout
    assert "trigger: skew: fare, payment_type" in runs_table


def test_an_alarm_acted_on_is_not_acted_on_again(loop):
    """The run it started did not replace the model (not blessed): the model
    that raised the alarm is still served, and still no second run."""
    served = loop.served()
    logs = loop.write_logs("new_version_logs", served, skew=True)
    assert loop.monitor(logs) == 1

    retrained = loop.one_pass("--min-auc", "1.01", "--train-steps", "10")

    assert retrained.returncode == 0, retrained.stdout + retrained.stderr
    run = loop.skew_runs()[-1]
    assert run["skew_check"] == loop.latest_check(logs).execution_id
    assert run["outcome"] == "not blessed" and loop.served() == served
    again = loop.one_pass()
    assert "No serving skew alarm to act on" in again.stdout, again.stdout + again.stderr
    assert len(loop.skew_runs()) == 2
