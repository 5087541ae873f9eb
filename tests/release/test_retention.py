"""Retention: `release check --versions-kept N` deletes the version folders that
are neither labelled, loaded, nor among the newest N; never a labelled one."""
import portpicker

from pipeline.release import actions, retention
from pipeline.release.serving_config import ServedVersions
from tests.release.conftest import release_cli
from tests.serving.conftest import add_version


def folders(setup) -> list[int]:
    return sorted(int(p.name) for p in setup.serving_dir.iterdir())


def test_check_deletes_old_unlabelled_versions_but_never_a_labelled_one(setup):
    nobody = f"http://127.0.0.1:{portpicker.pick_unused_port()}/monitoring/prometheus/metrics"
    release = setup.release(nobody)
    actions.add_version(release, setup.old, "the version served so far")
    newer = [setup.new + i for i in range(1, 4)]
    for version in newer:  # pushed but never released (say, their runs were stopped)
        add_version(setup.serving_dir, version, setup.serving_dir / str(setup.new))

    result = release_cli(setup, "check", "--versions-kept", "2", metrics_url=nobody)
    assert result.returncode == 0, result.stderr
    assert f"deleted version folder(s) {setup.new}, {newer[0]}" in result.stdout
    assert folders(setup) == [setup.old, *newer[1:]]

    result = release_cli(setup, "check", "--versions-kept", "0", metrics_url=nobody)
    assert result.returncode == 0, result.stderr
    # The stable (and canary) version stays, though it is the oldest.
    assert folders(setup) == [setup.old]
    assert not [p for p in setup.serving_dir.iterdir() if p.name.startswith(".")]


def test_a_label_protects_a_version_even_outside_the_loaded_ones():
    # A hand-edited config: stable names version 2, which `specific` forgot.
    served = ServedVersions(loaded=(5,), stable=2, canary=5)
    assert retention.versions_to_delete([1, 2, 3, 4, 5], served, versions_kept=0) == [1, 3, 4]
    assert retention.versions_to_delete([1, 2, 3, 4, 5], served, versions_kept=2) == [1, 3]
