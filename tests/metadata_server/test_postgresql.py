"""The pipeline, the lineage tool and the release command on a real PostgreSQL
store, chosen by --metadata or TAXI_METADATA, with the password only in
PGPASSWORD; and the run lock held in the database."""
import json
import os
import pathlib
import signal
import subprocess

from metadata import connection, releases, runs
from pipeline import config as pipeline_config
from pipeline import run_lock
from tests.metadata_server.conftest import (module_command, open_reader, run, run_local,
                                            start_lock_holder)


def test_a_run_is_refused_while_another_process_holds_the_database_lock(
        pipeline_on_postgresql):
    refused = pipeline_on_postgresql.refused
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert pipeline_on_postgresql.runs_while_waiting == 0, "the refused run started one"


def test_a_run_with_wait_waits_and_runs_once_the_holder_is_killed(pipeline_on_postgresql):
    assert pipeline_on_postgresql.waiter_session_seen, "the waiting run never asked the lock"
    assert pipeline_on_postgresql.runs_while_waiting == 0
    assert pipeline_on_postgresql.holder_status == -signal.SIGKILL
    waited = pipeline_on_postgresql.waited
    assert waited.returncode == 0, waited.stdout + waited.stderr


def test_the_run_recorded_its_push_and_release_in_postgresql(pipeline_on_postgresql):
    p = pipeline_on_postgresql
    store = open_reader(p.server, p.url)
    [run_context] = store.get_contexts_by_type(runs.PIPELINE_RUN)
    assert run_context.custom_properties[runs.SPAN].int_value == 15
    pushed = [a.custom_properties["pushed_version"].string_value
              for a in store.get_artifacts_by_type("PushedModel")
              if a.custom_properties["pushed"].int_value == 1]
    assert pushed == p.pushed_versions() and len(pushed) == 1
    # Written by the ReleaseCanary executor, which connected with the password-free
    # config from its exec property and PGPASSWORD from the environment.
    [record] = releases.history(store, pipeline_config.MODEL_NAME)
    assert (record.action, record.version) == ("promote", pushed[0])
    assert not (p.output_dir / pipeline_config.METADATA_FILE).exists(), "SQLite was not used"


def test_lineage_explains_the_pushed_model_from_postgresql(pipeline_on_postgresql):
    p = pipeline_on_postgresql
    model = run(module_command("pipeline.lineage", "model", "--format", "json",
                               "--metadata", p.url), p.server.environment())
    assert model.returncode == 0, model.stderr
    trace = json.loads(model.stdout)["model_trace"]
    assert trace["version"] == p.pushed_versions()[-1]
    assert [span["span"] for span in trace["spans"]] == [15]

    # The environment variable instead of the flag.
    listed = run(module_command("pipeline.lineage", "runs", "--format", "json"),
                 p.server.environment(TAXI_METADATA=p.url))
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)["runs"]) == 1

    no_password = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
    no_password["PGPASSFILE"] = os.devnull
    refused = run(module_command("pipeline.lineage", "runs", "--metadata", p.url), no_password)
    assert refused.returncode == 1, refused.stdout


def test_release_status_reads_postgresql(pipeline_on_postgresql):
    p = pipeline_on_postgresql
    status = run(module_command("pipeline.release", "status", "--metadata", p.url,
                                "--output-dir", str(p.output_dir)), p.server.environment())
    assert status.returncode == 0, status.stderr
    assert f"stable   version {p.pushed_versions()[0]}  since " in status.stdout


def test_the_password_is_nowhere_in_the_store_or_the_outputs(pipeline_on_postgresql):
    p = pipeline_on_postgresql
    store = open_reader(p.server, p.url)
    [release_step] = [e for e in store.get_executions()
                      if "metadata_connection" in e.custom_properties]
    stored = connection.from_text(release_step.custom_properties["metadata_connection"]
                                  .string_value)
    assert connection.describe(stored) == p.url and not stored.postgresql.password

    dump = subprocess.run([str(p.server.bin_dir / "pg_dump"), "-h", p.server.host, "-p", str(p.server.port),
                           "-U", p.server.user, p.dbname], env=p.server.environment(),
                          capture_output=True, timeout=120, check=True).stdout
    assert b"metadata_connection" in dump  # the exec property is in there...
    assert p.server.password.encode() not in dump  # ...without the password
    for path in pathlib.Path(p.output_dir).rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert p.server.password.encode() not in path.read_bytes(), path


def test_a_store_url_with_a_password_is_refused_by_every_command(tmp_path):
    leaked = "postgresql://taxi:hunter2-secret@127.0.0.1:9/taxi"
    (tmp_path / "logs").mkdir()
    commands = {
        "run": (run_local(tmp_path, tmp_path / "out", leaked), 2),
        "lineage": (module_command("pipeline.lineage", "runs", "--metadata", leaked), 1),
        "release": (module_command("pipeline.release", "status", "--metadata", leaked,
                                   "--output-dir", str(tmp_path / "out")), 1),
        "monitor": (module_command("pipeline.monitor", "--request-logs", str(tmp_path / "logs"),
                                   "--metadata", leaked, "--output-dir", str(tmp_path)), 2),
    }
    for name, (command, status) in commands.items():
        result = run(command, dict(os.environ), timeout=300)
        said = result.stdout + result.stderr
        assert result.returncode == status, f"{name}: {said}"
        assert "PGPASSWORD" in said and "hunter2" not in said, f"{name}: {said}"
    # The same from the environment variable.
    from_environment = run(run_local(tmp_path, tmp_path / "out", None),
                           {**os.environ, "TAXI_METADATA": leaked})
    assert from_environment.returncode == 2, from_environment.stderr
    assert not (tmp_path / "out").exists()


def test_a_second_watcher_on_the_same_store_is_refused_from_another_output_folder(
        postgresql_server, tmp_path):
    # Two machines: each its own output folder, one store. The file lock of
    # either folder would not see the other; the database lock does.
    store, env = postgresql_server.url("taxi_watchers"), postgresql_server.environment()
    watcher = start_lock_holder(store, env, run_lock.WATCH_LOCK)
    try:
        second = run(run_local(tmp_path / "data", tmp_path / "elsewhere", store, "--watch"),
                     env, timeout=300)
        assert second.returncode == 3, second.stdout + second.stderr
        assert f"pid {watcher.pid}" in second.stdout  # names the holder, wherever it runs
    finally:
        watcher.kill()
        watcher.wait()
