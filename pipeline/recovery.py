"""Repairs what a killed or stopped run left half-done, before the next run.

Runs under the run lock, so nothing it finds unfinished is still running:
executions left RUNNING are marked CANCELED (with why), runs without an outcome
are marked abandoned, their partial outputs and the Pusher's staging folders
are removed, and a version a killed Pusher renamed into the serving folder but
never recorded in ML Metadata is taken away again (the next run pushes anew).
"""
import dataclasses
import pathlib
import shutil

from metadata import runs

ABANDONED_REASON = "its process ended before it finished (killed or stopped)"


@dataclasses.dataclass
class Repairs:
    canceled_executions: list[int] = dataclasses.field(default_factory=list)
    abandoned_runs: list[str] = dataclasses.field(default_factory=list)
    removed: list[str] = dataclasses.field(default_factory=list)

    def __bool__(self):
        return bool(self.canceled_executions or self.abandoned_runs or self.removed)

    def describe(self) -> str:
        parts = []
        if self.abandoned_runs:
            parts.append(f"marked {len(self.abandoned_runs)} unfinished run(s) abandoned")
        if self.canceled_executions:
            parts.append(f"canceled {len(self.canceled_executions)} execution(s) left running")
        if self.removed:
            parts.append("removed " + ", ".join(self.removed))
        return "Recovered from an interrupted run: " + "; ".join(parts) + "."


def _remove(path: pathlib.Path, repairs: Repairs):
    shutil.rmtree(path, ignore_errors=True)
    repairs.removed.append(str(path))


def _interrupted_push_starts(store, executions) -> list[float]:
    types = {t.id: t.name for t in store.get_execution_types()}
    return [execution.create_time_since_epoch / 1000 for execution in executions
            if types.get(execution.type_id, "").endswith("Pusher")]


def _unrecorded_versions(store, serving_dir: pathlib.Path, push_starts) -> list[pathlib.Path]:
    """Version folders that an interrupted Pusher renamed into place (named by
    a time at or after it started) but never recorded."""
    if not serving_dir.is_dir() or not push_starts:
        return []
    recorded = runs.pushed_versions(store)
    return [path for path in serving_dir.iterdir()
            if path.name.isdigit() and path.name not in recorded
            and int(path.name) >= int(min(push_starts))]


def recover(store, pipeline_root: pathlib.Path, serving_dir: pathlib.Path,
            reason: str = ABANDONED_REASON) -> Repairs:
    repairs = Repairs()
    unfinished = runs.unfinished_executions(store)
    push_starts = _interrupted_push_starts(store, unfinished)
    for run_id in sorted(runs.runs_of_executions(store, unfinished)):
        runs.update_run(store, run_id, outcome="abandoned", outcome_detail=reason)
        repairs.abandoned_runs.append(run_id)
    runs.cancel_executions(store, unfinished, reason)
    repairs.canceled_executions = [execution.id for execution in unfinished]
    # A run registered but killed before its first execution has no outcome.
    for context in runs.all_runs(store):
        if runs.OUTCOME not in context.custom_properties and context.name not in repairs.abandoned_runs \
                and runs.TRIGGER in context.custom_properties:
            runs.update_run(store, context.name, outcome="abandoned", outcome_detail=reason)
            repairs.abandoned_runs.append(context.name)
    # Outputs of canceled executions live in <root>/<node>/<output key>/<execution id>.
    for execution in unfinished:
        for path in pipeline_root.glob(f"*/*/{execution.id}"):
            _remove(path, repairs)
    for path in _unrecorded_versions(store, serving_dir, push_starts):
        _remove(path, repairs)
    if serving_dir.is_dir():
        for path in serving_dir.glob(".staging-*"):
            _remove(path, repairs)
    return repairs
