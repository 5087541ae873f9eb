"""promote, rollback and status as a user types them, with no model server
running: each move is an execution in ML Metadata with the PushedModel as its
input, and `lineage model` tells since when a version is stable, and why."""
import subprocess

import portpicker

from metadata import connection, releases
from pipeline.release import actions
from tests.conftest import PROJECT_ROOT, PYTHON
from tests.release.conftest import MODEL, release_cli


def lineage_of(setup, version) -> str:
    result = subprocess.run(
        [PYTHON, "-m", "pipeline.lineage", "model", "--version", str(version),
         "--metadata_path", str(setup.output_dir / "metadata.sqlite")],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_promote_rollback_and_status_by_hand(setup):
    # Nothing listens here: as when no server runs, the labels move in the file and a
    # server started on it loads its versions first, then applies them.
    nobody = f"http://127.0.0.1:{portpicker.pick_unused_port()}/monitoring/prometheus/metrics"
    release = setup.release(nobody)
    actions.add_version(release, setup.old, "the version served so far")
    actions.add_version(release, setup.new, "pushed")
    assert "is the canary" in actions.label_pending(release, "pushed by run 2")

    status = release_cli(setup, "status", metrics_url=nobody)
    assert status.returncode == 0, status.stderr
    assert f"stable   version {setup.old}  since " in status.stdout
    assert f"canary   version {setup.new}  since " in status.stdout
    assert "canary: pushed by run 2" in status.stdout

    promoted = release_cli(setup, "promote", "--reason", "tips look right", metrics_url=nobody)
    assert promoted.returncode == 0, promoted.stderr
    assert f"Version {setup.new} is stable (was {setup.old})." in promoted.stdout
    status = release_cli(setup, "status", metrics_url=nobody).stdout
    assert f"stable   version {setup.new}  since " in status
    assert "promote: tips look right" in status
    assert f"rollback target  version {setup.old}" in status
    assert "stable since " in lineage_of(setup, setup.new)
    assert "promoted because tips look right" in lineage_of(setup, setup.new)

    again = release_cli(setup, "promote", metrics_url=nobody)
    assert again.returncode == 1
    assert f"No canary to promote: stable and canary are both version {setup.new}" in again.stderr

    rolled_back = release_cli(setup, "rollback", "--reason", "complaints", metrics_url=nobody)
    assert rolled_back.returncode == 0, rolled_back.stderr
    assert f"stable and canary are version {setup.old}" in rolled_back.stdout
    assert "rolled back at " in lineage_of(setup, setup.new)
    assert "because complaints" in lineage_of(setup, setup.new)
    assert "restored by a rollback because complaints" in lineage_of(setup, setup.old)

    # The version rolled back from is no rollback target: nothing is left to go back to.
    nothing = release_cli(setup, "rollback", metrics_url=nobody)
    assert nothing.returncode == 1
    assert "Nothing to roll back to" in nothing.stderr

    store = connection.open_reader(connection.sqlite_config(setup.output_dir / "metadata.sqlite"))
    history = releases.history(store, MODEL)
    assert [(r.action, r.version, r.stable_version, r.canary_version) for r in history[-4:]] == [
        ("promote", str(setup.old), str(setup.old), str(setup.old)),  # the first version
        ("canary", str(setup.new), str(setup.old), str(setup.new)),
        ("promote", str(setup.new), str(setup.new), str(setup.new)),
        ("rollback", str(setup.new), str(setup.old), str(setup.old))]
    for record in history[-4:]:
        [pushed] = store.get_artifacts_by_id([record.pushed_model_id])
        assert pushed.custom_properties["pushed_version"].string_value == record.version


def test_usage_errors_exit_2(setup):
    assert release_cli(setup, "frobnicate").returncode == 2
    assert release_cli(setup, "check", "--min-requests", "many").returncode == 2


def test_status_before_any_release_says_what_writes_it(setup):
    result = release_cli(setup, "status")
    assert result.returncode == 0
    assert "No release yet" in result.stdout and "the pipeline writes it" in result.stdout
