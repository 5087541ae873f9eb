"""The watcher as a user runs it: `run_local.py --watch` on a data folder that
grows while it runs, stopped with SIGTERM and restarted, contending for the run
lock, and a manual run killed with kill -9. Asserts on ML Metadata and the
serving folder.

The steps share one data folder and one store, in file order, as one session
of a user would.
"""
import signal
import subprocess

import pytest

from tests.conftest import PROJECT_ROOT, make_spans
from tests.continuous.conftest import (Store, Watcher, finished, pipeline_command,
                                       serving_versions, wait_for)

FIRST_SPAN, LAST_INITIAL_SPAN = 11, 13  # spans 1..13 "on disk"; the window needs 11..13


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    root = tmp_path_factory.mktemp("watch")
    data_dir, output_dir = root / "data", root / "outputs"
    # Spans 1..10 would never be read (older than the window); 11..13 stand for them.
    make_spans(data_dir, FIRST_SPAN, LAST_INITIAL_SPAN)
    state = {"data": data_dir, "out": output_dir, "store": Store(output_dir)}
    yield state
    for watcher in state.get("watchers", []):
        if watcher.process.poll() is None:
            watcher.kill()


def test_watcher_trains_on_the_newest_span_then_each_new_span_oldest_first(session):
    data_dir, output_dir, store = session["data"], session["out"], session["store"]
    watcher = Watcher(data_dir, output_dir)
    session["watchers"] = [watcher]

    first = wait_for(lambda: finished(store, 13), what="the run for span 13",
                     process=watcher.process)
    assert first["trigger"] == "new span 13" and first["outcome"] == "pushed", first
    backfilled = sorted(r["span"] for r in store.runs() if r.get("trigger") == "backfill")
    assert backfilled == [11, 12]

    # Two spans land while the watcher runs; a second watcher and a manual run
    # meanwhile are refused, naming the holder.
    make_spans(data_dir, 14, 15)
    second_watcher = subprocess.run(pipeline_command(data_dir, output_dir, "--watch"),
                                    capture_output=True, text=True, timeout=120)
    assert second_watcher.returncode == 3
    assert f"pid {watcher.process.pid}" in second_watcher.stdout
    wait_for(lambda: store.runs_for(14), what="the run for span 14 to start",
             process=watcher.process)
    manual = subprocess.run(pipeline_command(data_dir, output_dir), capture_output=True,
                            text=True, timeout=120)
    assert manual.returncode == 3, manual.stdout + manual.stderr
    assert f"pid {watcher.process.pid}" in manual.stdout

    # SIGTERM mid-run: the run is abandoned cleanly and the watcher exits 0.
    wait_for(lambda: "Transform" in (store.runs_for(14) or [{}])[-1].get("executions", {}),
             what="Transform of span 14 to start", process=watcher.process)
    assert watcher.stop() == 0
    stopped = store.runs_for(14)[-1]
    assert stopped["outcome"] == "stopped", stopped
    assert "RUNNING" not in stopped["executions"].values()
    assert store.unfinished_executions() == []
    assert not list((output_dir / "serving_model" / "taxi_tips").glob(".staging-*"))


def test_restarted_watcher_resumes_with_the_stopped_span(session):
    data_dir, output_dir, store = session["data"], session["out"], session["store"]
    watcher = Watcher(data_dir, output_dir)
    session["watchers"].append(watcher)
    wait_for(lambda: finished(store, 15), what="the run for span 15", process=watcher.process)
    assert watcher.stop() == 0

    for span in (14, 15):
        run = finished(store, span)
        assert run["trigger"] == f"new span {span}" and run["outcome"] == "pushed", run
    ordered = [r["span"] for r in store.runs() if r.get("outcome") == "pushed"]
    assert ordered == [13, 14, 15]
    # Every version on disk is recorded as pushed, and vice versa.
    assert set(serving_versions(output_dir)) == store.pushed_versions()
    assert len(store.pushed_versions()) == 3


def test_decay_policy_trains_only_when_the_served_model_decayed(session):
    from tests.continuous.conftest import copy_span, flip_label

    data_dir, output_dir, store = session["data"], session["out"], session["store"]
    versions_before = set(serving_versions(output_dir))
    watcher = Watcher(data_dir, output_dir, "--retrain-on", "decay",
                      "--max-decay-auc-drop", "0.3")
    session["watchers"].append(watcher)
    copy_span(data_dir, 15, 16)  # the same trips again: the model has not decayed
    kept = wait_for(lambda: finished(store, 16), what="span 16", process=watcher.process)
    assert kept["outcome"] == "not retrained", kept
    assert "Trainer" not in kept["executions"]
    assert set(serving_versions(output_dir)) == versions_before

    copy_span(data_dir, 15, 17, flip_label)  # the outcomes flipped: the model decayed
    retrained = wait_for(lambda: finished(store, 17), what="span 17", process=watcher.process)
    assert watcher.stop() == 0
    assert retrained["trigger"] == "decay", retrained
    assert retrained["executions"]["Trainer"] == "COMPLETE"
    assert len(set(serving_versions(output_dir)) - versions_before) == 1


def test_drift_policy_trains_when_the_new_span_drifted(session):
    from tests.continuous.conftest import copy_span, shift_distribution

    data_dir, output_dir, store = session["data"], session["out"], session["store"]
    watcher = Watcher(data_dir, output_dir, "--retrain-on", "drift")
    session["watchers"].append(watcher)
    copy_span(data_dir, 15, 18, shift_distribution)
    retrained = wait_for(lambda: finished(store, 18), what="span 18", process=watcher.process)
    assert watcher.stop() == 0
    assert retrained["trigger"] == "drift", retrained
    assert "payment_type" in retrained["trigger_detail"] or "fare" in retrained["trigger_detail"]
    assert retrained["executions"]["Trainer"] == "COMPLETE"


def test_schedule_retrains_a_window_whose_spans_did_not_train(session):
    from tests.continuous.conftest import copy_span

    data_dir, output_dir, store = session["data"], session["out"], session["store"]
    watcher = Watcher(data_dir, output_dir, "--retrain-on", "schedule",
                      "--retrain-every", "5s")
    session["watchers"].append(watcher)
    copy_span(data_dir, 14, 19)
    kept = wait_for(lambda: finished(store, 19), what="span 19", process=watcher.process)
    assert kept["outcome"] == "not retrained", kept
    scheduled = wait_for(lambda: [r for r in store.runs() if r.get("trigger") == "schedule"
                                  and r.get("outcome")], what="a scheduled run",
                         process=watcher.process)[0]
    assert watcher.stop() == 0
    assert scheduled["outcome"] == "pushed", scheduled
    assert scheduled["span"] == 19
    assert scheduled["executions"]["Trainer"] == "COMPLETE"


def test_run_killed_with_sigkill_is_repaired_by_the_next_run(session):
    from tests.continuous.conftest import copy_span

    data_dir, output_dir, store = session["data"], session["out"], session["store"]
    copy_span(data_dir, 13, 20)
    manual = subprocess.Popen(pipeline_command(data_dir, output_dir), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, cwd=PROJECT_ROOT)
    wait_for(lambda: (store.runs_for(20) or [{}])[-1].get("executions", {}).get("Trainer")
             == "RUNNING", what="the Trainer of span 20", process=manual)
    manual.send_signal(signal.SIGKILL)
    manual.wait()
    assert store.unfinished_executions(), "the kill left the Trainer RUNNING, as it should"

    rerun = subprocess.run(pipeline_command(data_dir, output_dir), capture_output=True,
                           text=True, timeout=900, cwd=PROJECT_ROOT)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert store.unfinished_executions() == []
    killed, completed = store.runs_for(20)[-2:]
    assert killed["outcome"] == "abandoned"
    assert "RUNNING" not in killed["executions"].values()
    assert completed["outcome"] == "pushed" and completed["trigger"] == "manual"
    assert set(serving_versions(output_dir)) == store.pushed_versions()
    staging = list((output_dir / "serving_model" / "taxi_tips").glob(".staging-*"))
    assert staging == []
