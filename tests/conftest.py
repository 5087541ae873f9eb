"""Shared fixtures: real pipeline runs on a small slice of the taxi data.

`pipeline_runs` runs `pipeline/run_local.py` as a user does, three times on one
store: a first run (backfills the window, trains, pushes), a second with no new
data (everything cached), and a third after one new span arrived. The pipeline,
lineage and serving tests all read the same store.
"""
import dataclasses
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent
PYTHON = sys.executable

# A small slice: 120 trips in each of spans 13..15 (2016 Q1..Q3), then span 16.
FIRST_SPANS = (13, 15)
NEW_SPAN = 16
ROWS_PER_SPAN = 120
# No quality bars, so that a model trained on this little data is pushed by both
# training runs and the tests are deterministic; test_evaluator_gate raises them.
# The InfraValidator's load test lasts 1 s, with a latency target a machine busy
# with other tests still meets; test_infra_validator sets an impossible one.
TEST_RUN_FLAGS = ["--training-window-spans", "3", "--train-steps", "300",
                  "--min-auc", "0", "--min-accuracy", "0",
                  "--max-auc-drop-vs-baseline", "1.0",
                  "--infra-load-seconds", "1", "--infra-p99-target-ms", "2000"]


def make_spans(data_dir, first, last, rows=ROWS_PER_SPAN):
    subprocess.run([PYTHON, str(PROJECT_ROOT / "data" / "make_spans.py"),
                    "--out", str(data_dir), "--first-span", str(first),
                    "--through-span", str(last), "--max-rows-per-span", str(rows)],
                   check=True, capture_output=True, text=True)


def copy_store(runs: "PipelineRuns", tmp_path) -> tuple[pathlib.Path, pathlib.Path]:
    """Data, metadata store and serving folder copied, so that a test can run
    the pipeline on from the shared store without changing it."""
    data_dir, output_dir = tmp_path / "data", tmp_path / "outputs"
    shutil.copytree(runs.data_dir, data_dir)
    shutil.copytree(runs.output_dir / "serving_model", output_dir / "serving_model")
    shutil.copy(runs.metadata_path, output_dir / "metadata.sqlite")
    return data_dir, output_dir


def run_pipeline(data_dir, output_dir, *extra_flags) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, str(PROJECT_ROOT / "pipeline" / "run_local.py"),
         "--data-dir", str(data_dir), "--output-dir", str(output_dir),
         *TEST_RUN_FLAGS, *extra_flags],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=1200)


@dataclasses.dataclass
class PipelineRuns:
    data_dir: pathlib.Path
    output_dir: pathlib.Path
    first: subprocess.CompletedProcess  # spans 13..15: backfill, train, push
    cached: subprocess.CompletedProcess  # same data again: every step cached
    after_new_span: subprocess.CompletedProcess  # span 16 arrived

    @property
    def metadata_path(self) -> pathlib.Path:
        return self.output_dir / "metadata.sqlite"

    @property
    def serving_dir(self) -> pathlib.Path:
        return self.output_dir / "serving_model" / "taxi_tips"

    def pushed_versions(self) -> list[int]:
        return sorted(int(p.name) for p in self.serving_dir.iterdir() if p.name.isdigit())


@pytest.fixture(scope="session")
def pipeline_runs(tmp_path_factory) -> PipelineRuns:
    root = tmp_path_factory.mktemp("pipeline")
    data_dir, output_dir = root / "data", root / "outputs"
    make_spans(data_dir, *FIRST_SPANS)
    first = run_pipeline(data_dir, output_dir)
    assert first.returncode == 0, first.stdout + first.stderr
    cached = run_pipeline(data_dir, output_dir)
    assert cached.returncode == 0, cached.stdout + cached.stderr
    make_spans(data_dir, NEW_SPAN, NEW_SPAN)
    after_new_span = run_pipeline(data_dir, output_dir)
    assert after_new_span.returncode == 0, after_new_span.stdout + after_new_span.stderr
    return PipelineRuns(data_dir, output_dir, first, cached, after_new_span)
