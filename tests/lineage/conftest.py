"""Fixtures for the lineage tests: the shared pipeline store and the CLI.

The store is the one `pipeline_runs` (tests/conftest.py) writes with real TFX
runs. LINEAGE_TEST_OUTPUT_DIR points at the outputs of an earlier run of the
same flow instead, to iterate on the tool without re-running the pipeline.
"""
import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import pytest

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[2]


@dataclasses.dataclass
class LineageStore:
    output_dir: pathlib.Path
    data_dir: pathlib.Path

    @property
    def metadata_path(self) -> pathlib.Path:
        return self.output_dir / "metadata.sqlite"

    @property
    def serving_dir(self) -> pathlib.Path:
        return self.output_dir / "serving_model" / "taxi_tips"

    def pushed_versions(self) -> list[int]:
        return sorted(int(p.name) for p in self.serving_dir.iterdir() if p.name.isdigit())


@pytest.fixture(scope="session")
def store(request) -> LineageStore:
    reuse = os.environ.get("LINEAGE_TEST_OUTPUT_DIR")
    if reuse:
        output_dir = pathlib.Path(reuse)
        return LineageStore(output_dir, output_dir.parent / "data")
    runs = request.getfixturevalue("pipeline_runs")
    return LineageStore(runs.output_dir, runs.data_dir)


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
