"""`runs` says why each run started and how it ended, as the runner recorded
it, and why a run that did not finish stopped."""
from metadata import runs as run_metadata
from pipeline import recovery, runner
from tests.lineage.test_model_trace import RawLineage


def test_json_trigger_and_outcome_of_each_run_are_what_mlmd_says(store, lineage_json):
    recorded = {context.id: context.custom_properties for context in
                RawLineage(store.metadata_path).mlmd.get_contexts_by_type("pipeline_run")}
    runs = lineage_json("runs")["runs"]
    assert {run["id"] for run in runs} == set(recorded)
    for run in runs:
        properties = recorded[run["id"]]
        assert run["trigger"] == properties["trigger"].string_value
        detail = properties["trigger_detail"] if "trigger_detail" in properties else None
        assert run["trigger_detail"] == (detail.string_value if detail else None)
        assert run["span"] == properties["span"].int_value
        assert run["outcome"] == properties["outcome"].string_value
        assert run["outcome_detail"] == properties["outcome_detail"].string_value
        assert run["status"] == "COMPLETE" and run["why"] is None
    # The first run backfilled spans 13 and 14 in runs of their own.
    assert [(r["trigger"], r["span"], r["outcome"]) for r in runs[:2]] == [
        ("backfill", 13, "ingested"), ("backfill", 14, "ingested")]
    assert runs[-1]["span"] == 16 and runs[-1]["outcome"] == "pushed"
    assert runs[-1]["outcome_detail"] == runs[-1]["pushed_version"]


def test_text_table_has_a_trigger_column(store, lineage):
    header, *rows = lineage("runs").splitlines()
    assert header.split()[:5] == ["ID", "STARTED", "DURATION", "STATUS", "TRIGGER"]
    assert sum("backfill" in row for row in rows) == 2
    assert "manual" in rows[-1] and "RUNNING" not in "\n".join(rows)


def test_interrupted_runs_show_how_they_ended_and_why(store_copy, tmp_path):
    mlmd = store_copy.mlmd
    first, previous, latest = run_metadata.all_runs(mlmd)[-3:]

    def kill_midway(run):
        executions = run_metadata.executions_of_run(mlmd, run.name)
        for execution in executions:
            execution.last_known_state = run_metadata.Execution.RUNNING
        mlmd.put_executions(executions)

    # Killed: the next start's recovery step cancels what the run left running.
    kill_midway(latest)
    repairs = recovery.recover(mlmd, tmp_path / "no_pipeline_root", store_copy.serving_dir)
    assert repairs.abandoned_runs == [latest.name]
    # Stopped by SIGTERM: the runner cancels the run's steps itself.
    kill_midway(previous)
    runner.record_stop(store_copy.config, previous.name, "stop requested (SIGTERM)")
    # Failed: what the runner records when TFX raises.
    runner.record_outcome(store_copy.config, first.name, "failed",
                          "ValidationGate: 1 anomaly in span 15: trip_miles out of range")

    runs = {r["name"]: r for r in store_copy.cli_json("runs")["runs"]}
    assert runs[latest.name]["status"] == "ABANDONED"
    assert runs[latest.name]["why"] == recovery.ABANDONED_REASON
    assert runs[previous.name]["status"] == "STOPPED"
    assert runs[previous.name]["why"] == "stop requested (SIGTERM)"
    assert runs[first.name]["status"] == "FAILED"
    assert "trip_miles out of range" in runs[first.name]["why"]

    text = store_copy.cli("runs")
    assert "RUNNING" not in text
    lines = text.splitlines()
    for name, status, why in [(latest.name, "ABANDONED", recovery.ABANDONED_REASON),
                              (previous.name, "STOPPED", "stop requested (SIGTERM)"),
                              (first.name, "FAILED", "trip_miles out of range")]:
        row = next(i for i, line in enumerate(lines) if line.endswith(name))
        assert status in lines[row].split()
        assert lines[row + 1].lstrip().startswith("why: ") and why in lines[row + 1]


def test_runs_of_an_older_store_show_as_before(store_copy):
    """Stores written before the runner recorded triggers: no TRIGGER column."""
    contexts = store_copy.mlmd.get_contexts_by_type(run_metadata.PIPELINE_RUN)
    for context in contexts:
        context.ClearField("custom_properties")
    store_copy.mlmd.put_contexts(contexts)

    runs = store_copy.cli_json("runs")["runs"]
    assert {(r["trigger"], r["outcome"], r["status"]) for r in runs} == {(None, None, "COMPLETE")}
    assert store_copy.cli("runs").split()[:5] == ["ID", "STARTED", "DURATION", "STATUS", "STEPS"]
