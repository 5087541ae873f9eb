"""The pipeline as an Airflow DAG, run for real: `airflow db migrate` on a
temporary Airflow home, then `airflow dags test taxi_tips` twice on one store.
The first run finds new spans (backfills the window, trains, pushes); the second
finds none, so its sensor gives up and nothing is trained. Asserts on Airflow's
own database, ML Metadata and the serving folder.
"""
import json
import os
import pathlib
import sqlite3
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT, ROWS_PER_SPAN, TEST_RUN_FLAGS, make_spans

AIRFLOW = str(pathlib.Path(sys.executable).parent / "airflow")
DAG_ID = "taxi_tips"
# The local runs' TEST_RUN_FLAGS (a small window, few steps, no quality bars) as
# PipelineConfig fields: each flag is its field's name.
PIPELINE_OVERRIDES = {flag[2:].replace("-", "_"): value
                      for flag, value in zip(TEST_RUN_FLAGS[::2], TEST_RUN_FLAGS[1::2])}
TFX_NODES = ("CsvExampleGen", "StatisticsGen", "SchemaGen", "ImportSchemaGen",
             "ExampleValidator", "ValidationGate", "served_model_resolver", "DecayCheck",
             "DriftCheck", "RetrainDecision", "training_window_resolver", "Transform",
             "Trainer", "baseline_model_resolver", "Evaluator", "InfraValidator", "Pusher",
             "ReleaseCanary")


def airflow_env(home: pathlib.Path, data_dir: pathlib.Path, output_dir: pathlib.Path) -> dict:
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # Parsing the DAG file imports TFX and compiles the pipeline: slow on a busy CI.
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "600",
        "AIRFLOW__CORE__DAG_FILE_PROCESSOR_TIMEOUT": "600",
        # Nothing leaves the machine: no usage data (Airflow 2.10 sends it by default).
        "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
        "SCARF_ANALYTICS": "false",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "PYTHONPATH": str(PROJECT_ROOT),
        "TF_USE_LEGACY_KERAS": "1",
        "TAXI_DATA_DIR": str(data_dir),
        "TAXI_OUTPUT_DIR": str(output_dir),
        "TAXI_PIPELINE_OVERRIDES": json.dumps(PIPELINE_OVERRIDES),
        # `dags test` runs every task in its one process: poke, and give up soon.
        "TAXI_AIRFLOW_SENSOR_MODE": "poke",
        "TAXI_AIRFLOW_SENSOR_POKE_INTERVAL": "1",
        "TAXI_AIRFLOW_SENSOR_TIMEOUT": "3",
    }


def airflow(env, *args, timeout=1500) -> subprocess.CompletedProcess:
    return subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=timeout)


def task_states(home: pathlib.Path, logical_date: str) -> tuple[str, dict]:
    """(the DAG run's state, {task: state}) from Airflow's own database."""
    with sqlite3.connect(home / "airflow.db") as db:
        [(run_id, state)] = db.execute(
            "SELECT run_id, state FROM dag_run WHERE dag_id = ? AND run_id LIKE ?",
            (DAG_ID, f"%{logical_date}%")).fetchall()
        tasks = dict(db.execute(
            "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?",
            (DAG_ID, run_id)).fetchall())
    return state, tasks


def tfx_runs(output_dir: pathlib.Path) -> list[dict]:
    """Every pipeline run in ML Metadata: its name and recorded properties."""
    from metadata import connection, runs
    store = connection.open_reader(connection.sqlite_config(output_dir / "metadata.sqlite"))
    return [{"name": c.name, **runs.run_properties(c)} for c in runs.all_runs(store)]


def node_executions(output_dir: pathlib.Path) -> dict[str, list[str]]:
    """{node id: states of its executions} over the whole store."""
    from ml_metadata.proto import metadata_store_pb2

    from metadata import connection
    store = connection.open_reader(connection.sqlite_config(output_dir / "metadata.sqlite"))
    found = {}
    for node in TFX_NODES:
        context = store.get_context_by_type_and_name("node", f"{DAG_ID}.{node}")
        executions = store.get_executions_by_context(context.id) if context else []
        found[node] = [metadata_store_pb2.Execution.State.Name(e.last_known_state)
                       for e in executions]
    return found


def served_versions(output_dir: pathlib.Path) -> list[str]:
    serving = output_dir / "serving_model" / "taxi_tips"
    return sorted(p.name for p in serving.iterdir() if p.name.isdigit()) \
        if serving.is_dir() else []


@pytest.fixture(scope="module")
def airflow_session(tmp_path_factory):
    root = tmp_path_factory.mktemp("airflow")
    home, data_dir, output_dir = root / "airflow_home", root / "data", root / "outputs"
    make_spans(data_dir, 13, 15, rows=ROWS_PER_SPAN)
    env = airflow_env(home, data_dir, output_dir)
    migrate = airflow(env, "db", "migrate", timeout=600)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    return {"home": home, "data": data_dir, "out": output_dir, "env": env}


def test_a_scheduled_run_with_new_spans_backfills_trains_and_pushes(airflow_session):
    home, output_dir = airflow_session["home"], airflow_session["out"]
    result = airflow(airflow_session["env"], "dags", "test", DAG_ID, "2024-01-01")
    log = result.stdout[-6000:] + result.stderr[-6000:]
    assert result.returncode == 0, log

    state, tasks = task_states(home, "2024-01-01")
    assert state == "success", (tasks, log)
    assert {task: tasks.get(task) for task in
            ("wait_for_new_span", "backfill_window", "register_run", *TFX_NODES,
             "record_outcome")} == dict.fromkeys(
        ("wait_for_new_span", "backfill_window", "register_run", *TFX_NODES,
         "record_outcome"), "success"), log

    # Every component ran (the resolvers' executions are recorded too).
    executions = node_executions(output_dir)
    assert all(executions[node] for node in TFX_NODES), executions
    assert all(set(states) <= {"COMPLETE", "CACHED"} for states in executions.values()), \
        executions

    # The backfill ingested spans 13 and 14 in runs of their own; the Airflow run
    # recorded its trigger (span 15, the newest) and its outcome: a pushed model.
    recorded = tfx_runs(output_dir)
    assert [(r["trigger"], r["span"], r["outcome"]) for r in recorded] == [
        ("backfill", 13, "ingested"), ("backfill", 14, "ingested"),
        ("new span 15", 15, "pushed")], recorded
    airflow_run = recorded[-1]
    assert airflow_run["name"].startswith("airflow:")
    [version] = served_versions(output_dir)
    assert airflow_run["outcome_detail"] == version
    assert (output_dir / "serving_model" / "taxi_tips" / version / "saved_model.pb").is_file()


def test_a_scheduled_run_with_no_new_span_trains_nothing(airflow_session):
    home, output_dir = airflow_session["home"], airflow_session["out"]
    before_runs, before_versions = tfx_runs(output_dir), served_versions(output_dir)
    before_executions = node_executions(output_dir)

    result = airflow(airflow_session["env"], "dags", "test", DAG_ID, "2024-01-02")
    log = result.stdout[-6000:] + result.stderr[-6000:]
    assert result.returncode == 0, log

    state, tasks = task_states(home, "2024-01-02")
    assert state == "success", (tasks, log)
    # The sensor gave up (soft fail): every task after it is skipped.
    assert set(tasks.values()) == {"skipped"}, tasks
    assert tfx_runs(output_dir) == before_runs
    assert node_executions(output_dir) == before_executions
    assert served_versions(output_dir) == before_versions
