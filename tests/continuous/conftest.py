"""Helpers for the continuous-training tests: a watcher process started as a
user starts it, and waits on what it records in ML Metadata."""
import csv
import os
import pathlib
import signal
import subprocess
import sys
import time

from ml_metadata import errors as mlmd_errors

from metadata import connection, runs
from tests.conftest import PROJECT_ROOT, PYTHON

# Small and fast: the tests check what triggers a run, not model quality.
WATCH_FLAGS = ["--training-window-spans", "3", "--train-steps", "100",
               "--min-auc", "0", "--min-accuracy", "0", "--max-auc-drop-vs-baseline", "1.0",
               "--check-every", "1"]


def pipeline_command(data_dir, output_dir, *flags):
    return [PYTHON, str(PROJECT_ROOT / "pipeline" / "run_local.py"),
            "--data-dir", str(data_dir), "--output-dir", str(output_dir), *WATCH_FLAGS, *flags]


class Watcher:
    """`run_local.py --watch` in its own process; its output goes to a file."""

    def __init__(self, data_dir, output_dir, *flags, log_name="watcher.log"):
        self.log_path = pathlib.Path(output_dir).parent / log_name
        self.log = open(self.log_path, "a")
        self.process = subprocess.Popen(pipeline_command(data_dir, output_dir, "--watch", *flags),
                                        stdout=self.log, stderr=subprocess.STDOUT,
                                        cwd=PROJECT_ROOT)

    def output(self) -> str:
        return self.log_path.read_text()

    def stop(self, timeout=120) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.log.close()

    def kill(self):
        self.process.kill()
        self.process.wait()
        self.log.close()


class Store:
    """Read-only looks at the pipeline's ML Metadata store, retried while a
    writer holds SQLite's lock."""

    def __init__(self, output_dir):
        self.path = pathlib.Path(output_dir) / "metadata.sqlite"

    def _read(self, query):
        for _ in range(20):
            try:
                return query(connection.open_reader(connection.sqlite_config(self.path)))
            except (mlmd_errors.StatusError, connection.StoreError, RuntimeError):
                time.sleep(0.5)
        return query(connection.open_reader(connection.sqlite_config(self.path)))

    def runs(self) -> list[dict]:
        """Every run's recorded properties, oldest first, with its executions."""
        def query(store):
            result = []
            for context in runs.all_runs(store):
                record = runs.run_properties(context)
                record["name"] = context.name
                executions = store.get_executions_by_context(context.id)
                types = {t.id: t.name for t in store.get_execution_types()}
                record["executions"] = {types[e.type_id].rsplit(".", 1)[-1]:
                                        runs.Execution.State.Name(e.last_known_state)
                                        for e in executions}
                result.append(record)
            return result
        return self._read(query) if self.path.exists() else []

    def runs_for(self, span) -> list[dict]:
        return [r for r in self.runs() if r.get("span") == span and r.get("trigger") != "backfill"]

    def unfinished_executions(self):
        return self._read(runs.unfinished_executions)

    def pushed_versions(self) -> set[str]:
        return self._read(runs.pushed_versions)


def wait_for(condition, timeout=600, what="condition", process=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        result = condition()
        if result:
            return result
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process exited ({process.returncode}) before {what}")
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def finished(store: Store, span: int):
    """The run for `span` that ended with a final outcome, if any."""
    done = [r for r in store.runs_for(span) if r.get("outcome") in runs.FINAL_OUTCOMES]
    return done[-1] if done else None


def serving_versions(output_dir) -> list[str]:
    folder = pathlib.Path(output_dir) / "serving_model" / "taxi_tips"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def copy_span(data_dir, source_span, new_span, rewrite_row=None):
    """Lays out span `new_span` from `source_span`'s rows, rewritten, written
    then renamed into place as a real producer would."""
    with open(data_dir / f"span-{source_span}" / "data.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if rewrite_row:
        rows = [rewrite_row(dict(row)) for row in rows]
    staging = data_dir / f".span-{new_span}.writing"
    staging.mkdir()
    with open(staging / "data.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.rename(staging, data_dir / f"span-{new_span}")


def flip_label(row):
    """Big tippers become small ones and back: the served model's outcomes flip."""
    fare = float(row["fare"] or 0)
    big = float(row["tips"] or 0) > 0.2 * fare
    row["tips"] = "0.0" if big else f"{fare:.2f}"
    return row


def shift_distribution(row):
    """Cash and long expensive trips only: a clear drift from any quarter."""
    row["payment_type"] = "Cash"
    row["fare"] = f"{float(row['fare'] or 0) * 5 + 20:.2f}"
    row["trip_miles"] = f"{float(row['trip_miles'] or 0) * 5 + 10:.2f}"
    return row


def python_env():
    return dict(os.environ, TF_USE_LEGACY_KERAS="1")


__all__ = ["PYTHON", "sys"]
