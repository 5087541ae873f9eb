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
