"""Fixtures for the lineage tests: the shared pipeline store and the CLI.

The store is the one `pipeline_runs` (tests/conftest.py) writes with real TFX
runs: a first run, a cached rerun, and a run after span 16 arrived.
"""
import json
import pathlib
import subprocess
import sys

import pytest

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def store(pipeline_runs):
    """.metadata_path, .data_dir, .serving_dir and .pushed_versions() of the runs."""
    return pipeline_runs


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.lineage", *map(str, args)],
                          capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)


@pytest.fixture(scope="session")
def run_cli():
    """`python -m pipeline.lineage ARGS` from the project root, as a user runs it."""
    return _run_cli


@pytest.fixture(scope="session")
def lineage(store):
    """Runs the CLI on the shared store; fails the test on a non-zero exit."""
    def call(*args: str) -> str:
        result = _run_cli("--metadata_path", store.metadata_path, *args)
        assert result.returncode == 0, f"lineage {args} failed:\n{result.stderr}"
        return result.stdout
    return call


@pytest.fixture(scope="session")
def lineage_json(lineage):
    def call(*args: str):
        return json.loads(lineage(*args, "--format", "json"))
    return call


@pytest.fixture(scope="session")
def training_runs(lineage_json) -> list[dict]:
    """Runs that trained (or reused) a model, oldest first; backfills left out."""
    runs = [r for r in lineage_json("runs")["runs"] if "Trainer" in r["nodes"]]
    assert len(runs) == 3, f"expected first, cached and new-span runs: {runs}"
    return runs



class StoreCopy:
    """A writable copy of the shared store (`mlmd`, opened read-write with the
    project's metadata layer), and the lineage CLI on it."""

    def __init__(self, output_dir: pathlib.Path):
        from metadata import connection

        self.path = output_dir / "metadata.sqlite"
        self.serving_dir = output_dir / "serving_model" / "taxi_tips"
        self.config = connection.sqlite_config(self.path)
        self.mlmd = connection.open_store(self.config)

    def cli(self, *args: str) -> str:
        result = _run_cli("--metadata_path", self.path, *args)
        assert result.returncode == 0, f"lineage {args} failed:\n{result.stderr}"
        return result.stdout

    def cli_json(self, *args: str):
        return json.loads(self.cli(*args, "--format", "json"))


@pytest.fixture
def store_copy(store, tmp_path) -> StoreCopy:
    """A copy of the shared store and serving folder, for tests that add to the
    record (a killed run, span checks) or remove a version.

    The copy's PushedModels are pointed at the copied serving folder, as if the
    outputs folder had been moved, so that removing a version there is what
    the tool sees.
    """
    from tests.conftest import copy_store

    _, output_dir = copy_store(store, tmp_path)
    copy = StoreCopy(output_dir)
    moved = []
    for pushed in copy.mlmd.get_artifacts_by_type("PushedModel"):
        destination = pushed.custom_properties["pushed_destination"]
        if destination.string_value:
            destination.string_value = destination.string_value.replace(
                str(store.output_dir), str(output_dir))
            moved.append(pushed)
    copy.mlmd.put_artifacts(moved)
    return copy

