"""The pipeline's ReleaseCanary after the Pusher: a pushed version is added to
the versions the server loads and, once the server has it, labelled canary
while stable stays; with no server to ask it waits for `release check`."""
import re

from metadata import connection, releases, serving_checks
from pipeline.release import actions, serving_config
from pipeline.release.serving_config import ServedVersions
from tests.conftest import run_pipeline
from tests.release.conftest import MODEL, serve, wait_for_labels


def read_served(output_dir) -> ServedVersions:
    path = output_dir / "serving_config" / "models.config"
    return serving_config.served_versions(serving_config.read(path), MODEL)


def test_the_shared_runs_made_their_first_push_stable_and_left_the_second_pending(
        pipeline_runs):
    first, second = pipeline_runs.pushed_versions()
    # The first run wrote a new config: nothing followed it yet, so its version is
    # labelled at once. The third run had no server to ask: its version is loaded
    # but not labelled until a check sees the server has it.
    assert read_served(pipeline_runs.output_dir) == ServedVersions((first, second), first, first)
    store = connection.open_reader(connection.sqlite_config(pipeline_runs.metadata_path))
    [record] = releases.history(store, MODEL)
    assert (record.action, record.version) == ("promote", str(first))
    assert "first version in the serving config" in record.reason


def test_a_pipeline_run_makes_its_pushed_version_the_canary(setup, tmp_path):
    actions.add_version(setup.release(), setup.new, "served before this run")
    server = serve(setup, tmp_path)
    try:
        run = run_pipeline(setup.data_dir, setup.output_dir, "--no-cache",
                           "--serving-metrics-url", server.metrics_url)
        assert run.returncode == 0, run.stdout + run.stderr
        assert re.search(r"ReleaseCanary\s+ran", run.stdout), run.stdout
        pushed = int(re.search(r"Pushed model version (\d+)\.", run.stdout).group(1))
        assert read_served(setup.output_dir) == ServedVersions(
            (setup.new, pushed), stable=setup.new, canary=pushed)
        wait_for_labels(server, stable=setup.new, canary=pushed)
    finally:
        server.stop()
    store = connection.open_reader(connection.sqlite_config(setup.output_dir / "metadata.sqlite"))
    record = releases.history(store, MODEL)[-1]
    assert (record.action, record.version, record.stable_version) == (
        "canary", str(pushed), str(setup.new))
    assert record.reason == (f"pushed by the pipeline; loaded by the server; "
                             f"stable stays {setup.new}")
    assert record.pushed_model_id == serving_checks.pushed_model_of_version(store, str(pushed)).id
