"""Small look-ups on an ML Metadata store, each returning plain records.

Runs are TFX `pipeline_run` contexts; pushed versions are PushedModel
artifacts. Everything goes through MLMD's query API, never SQL.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from metadata import runs as run_metadata
from metadata import serving_checks
from pipeline.lineage import convert, span_checks
from pipeline.lineage.errors import LineageError
from pipeline.lineage.records import (ArtifactRecord, ExecutionRecord,
                                      RunRecord, ServingWindow, SpanDrift,
                                      SpanPerformance)

Store = metadata_store.MetadataStore
_Execution = metadata_store_pb2.Execution


def get_artifact(store: Store, artifact_id: int) -> ArtifactRecord:
  artifacts = store.get_artifacts_by_id([artifact_id])
  if not artifacts:
    raise LineageError(
        f'no artifact with id {artifact_id} in the store; '
        '`python -m pipeline.lineage graph --format json` lists the ids')
  record = convert.artifact_record(artifacts[0])
  producers = producer_executions(store, [artifact_id]).get(artifact_id, [])
  if producers:
    record.producer_node = executions(store, producers[:1])[producers[0]].node
  return record


def executions(store: Store,
               execution_ids: Iterable[int]) -> dict[int, ExecutionRecord]:
  """Execution records with their node id and run name filled in."""
  records = {}
  for execution in store.get_executions_by_id(list(execution_ids)):
    node, run = convert.node_and_run(
        store.get_contexts_by_execution(execution.id))
    records[execution.id] = convert.execution_record(execution, node, run)
  return records


def producer_executions(store: Store, artifact_ids: Iterable[int]
                        ) -> dict[int, list[int]]:
  """artifact id -> ids of executions that output it (cached ones included)."""
  result: dict[int, list[int]] = {}
  for event in store.get_events_by_artifact_ids(list(artifact_ids)):
    if convert.is_output(event):
      result.setdefault(event.artifact_id, []).append(event.execution_id)
  return {k: sorted(v) for k, v in result.items()}


def execution_inputs(store: Store, execution_id: int
                     ) -> list[tuple[str, int]]:
  return [(key, e.artifact_id)
          for e in store.get_events_by_execution_ids([execution_id])
          if convert.is_input(e) for key in convert.event_keys(e)]


def execution_outputs(store: Store, execution_id: int
                      ) -> list[tuple[str, int]]:
  return [(key, e.artifact_id)
          for e in store.get_events_by_execution_ids([execution_id])
          if convert.is_output(e) for key in convert.event_keys(e)]


def cache_source(store: Store, execution_id: int) -> Optional[int]:
  """For a CACHED execution, the earlier execution that computed its outputs.

  TFX records a cache hit as a new execution with OUTPUT events pointing at
  the reused artifacts; their other producer is the one that really ran.
  """
  outputs = [a for _, a in execution_outputs(store, execution_id)]
  if not outputs:
    return None
  candidates = [p for p in producer_executions(store, outputs[:1]).get(
      outputs[0], []) if p != execution_id]
  for execution in store.get_executions_by_id(candidates):
    if execution.last_known_state != _Execution.CACHED:
      return execution.id
  return None


def artifacts(store: Store, artifact_ids: Iterable[int]
              ) -> dict[int, ArtifactRecord]:
  return {a.id: convert.artifact_record(a)
          for a in store.get_artifacts_by_id(list(artifact_ids))}


# Outcomes of a run that ended before it finished; STATUS shows them instead
# of what its (canceled) executions say.
_INTERRUPTED = ('stopped', 'abandoned')
_UNFINISHED = (_Execution.NEW, _Execution.RUNNING, _Execution.UNKNOWN)


def _run_status(states: list[int], outcome: Optional[str]) -> str:
  if outcome in _INTERRUPTED:
    return outcome.upper()
  if outcome == 'failed' or any(s == _Execution.FAILED for s in states):
    return 'FAILED'
  if any(s == _Execution.CANCELED for s in states):
    return 'CANCELED'
  if any(s in _UNFINISHED for s in states) or (not states and not outcome):
    return 'RUNNING'
  return 'COMPLETE'


def _run_properties(context: metadata_store_pb2.Context) -> dict[str, Any]:
  """The runner's properties of a run (trigger, outcome...); a store older
  than the runner has none."""
  recorded = run_metadata.run_properties(context)
  texts = (run_metadata.TRIGGER, run_metadata.TRIGGER_DETAIL,
           run_metadata.OUTCOME, run_metadata.OUTCOME_DETAIL)
  # run_properties reads an empty string as 0; these are texts.
  values = {name: (str(recorded[name]) if recorded[name] else '')
            for name in texts if name in recorded}
  if run_metadata.SPAN in recorded:
    values[run_metadata.SPAN] = recorded[run_metadata.SPAN]
  return values


def _why(status: str, outcome_detail: Optional[str],
         run_executions: list[ExecutionRecord]) -> Optional[str]:
  """Why a run did not complete: what the runner recorded, else what the
  recovery step wrote on its canceled executions, else TFX's error."""
  if status not in ('FAILED', 'STOPPED', 'ABANDONED', 'CANCELED'):
    return None
  if outcome_detail:
    return outcome_detail
  for execution in run_executions:
    reason = execution.properties.get('canceled_because')
    if execution.state == 'CANCELED' and reason:
      return f'{execution.node}: {reason}'
  for execution in run_executions:
    result = execution.properties.get('__execution_result__')
    if execution.state == 'FAILED' and isinstance(result, dict):
      return f'{execution.node}: ' + str(result.get('resultMessage') or 'failed')
  return None


def _pushed(artifact: ArtifactRecord) -> bool:
  return artifact.type == 'PushedModel' and bool(
      artifact.properties.get('pushed'))


def _run_record(store: Store, context: metadata_store_pb2.Context) -> RunRecord:
  run_executions = store.get_executions_by_context(context.id)
  pipeline = ''
  if run_executions:
    pipeline = next((c.name for c in
                     store.get_contexts_by_execution(run_executions[0].id)
                     if c.type == 'pipeline'), '')
  starts = [e.create_time_since_epoch for e in run_executions] or [
      context.create_time_since_epoch]
  ends = [e.last_update_time_since_epoch for e in run_executions] or starts
  # What the run's Pusher wrote (a cached one re-outputs an earlier push);
  # not the PushedModels the run only read, such as the served model a
  # DecayCheck measures, although MLMD attributes those to the run too.
  written = {e.artifact_id for e in store.get_events_by_execution_ids(
      [e.id for e in run_executions]) if convert.is_output(e)}
  pushed = [a for a in artifacts(store, written).values() if _pushed(a)]
  pushed.sort(key=lambda a: a.id)
  records = sorted(executions(store, [e.id for e in run_executions]).values(),
                   key=lambda r: (r.started, r.id))
  recorded = _run_properties(context)
  outcome = recorded.get(run_metadata.OUTCOME)
  status = _run_status([e.last_known_state for e in run_executions], outcome)
  return RunRecord(
      id=context.id,
      name=context.name,
      pipeline=pipeline,
      started=min(starts) / 1000.0,
      duration_s=round((max(ends) - min(starts)) / 1000.0, 3),
      status=status,
      executions=len(run_executions),
      cached=sum(e.last_known_state == _Execution.CACHED
                 for e in run_executions),
      nodes=[r.node for r in records],
      pushed_version=(str(pushed[-1].properties.get('pushed_version'))
                      if pushed else None),
      pushed_model=pushed[-1].id if pushed else None,
      pushed_reused=bool(pushed) and pushed[-1].created * 1000 < min(starts),
      trigger=recorded.get(run_metadata.TRIGGER),
      trigger_detail=recorded.get(run_metadata.TRIGGER_DETAIL),
      span=recorded.get(run_metadata.SPAN),
      outcome=outcome,
      outcome_detail=recorded.get(run_metadata.OUTCOME_DETAIL),
      why=_why(status, recorded.get(run_metadata.OUTCOME_DETAIL), records),
  )


def list_runs(store: Store, pipeline: Optional[str] = None) -> list[RunRecord]:
  """All pipeline runs, oldest first."""
  runs = [_run_record(store, c) for c in store.get_contexts_by_type(
      'pipeline_run')]
  if pipeline:
    runs = [r for r in runs if r.pipeline == pipeline]
  return sorted(runs, key=lambda r: (r.started, r.id))


def require_runs(store: Store) -> list[RunRecord]:
  runs = list_runs(store)
  if not runs:
    raise LineageError('the metadata store has no pipeline runs yet: run '
                       '`python pipeline/run_local.py` first')
  return runs


def resolve_run(store: Store, ref: str) -> RunRecord:
  """A run by context id, by name, or "latest" / "previous"."""
  runs = require_runs(store)
  if ref in ('latest', 'previous'):
    index = -1 if ref == 'latest' else -2
    if len(runs) < -index:
      raise LineageError(f'there is no {ref} run: the store has '
                         f'{len(runs)} run(s)')
    return runs[index]
  for run in runs:
    if ref == run.name or ref == str(run.id):
      return run
  raise LineageError(f'no pipeline run {ref!r}; known runs: ' +
                     ', '.join(f'{r.id} ({r.name})' for r in runs[-10:]) +
                     '  (see `python -m pipeline.lineage runs`)')


def _version_key(artifact: ArtifactRecord):
  version = str(artifact.properties.get('pushed_version', ''))
  return (int(version) if version.isdigit() else -1, version, artifact.id)


def pushed_models(store: Store) -> list[ArtifactRecord]:
  """PushedModel artifacts that really pushed, oldest version first."""
  records = [convert.artifact_record(a)
             for a in store.get_artifacts_by_type('PushedModel')]
  return sorted((a for a in records if _pushed(a)), key=_version_key)


def find_pushed_model(store: Store,
                      version: Optional[str] = None) -> ArtifactRecord:
  """The PushedModel of a version, or the latest one (the one being served)."""
  pushed = pushed_models(store)
  if not pushed:
    require_runs(store)
    raise LineageError('no model has been pushed yet in this store '
                       '(no PushedModel artifact with pushed=1)')
  if version is None:
    return pushed[-1]
  for artifact in pushed:
    if str(artifact.properties.get('pushed_version')) == str(version):
      return artifact
  known = ', '.join(str(a.properties.get('pushed_version'))
                    for a in pushed[-10:])
  raise LineageError(f'no pushed model version {version}; pushed versions: '
                     f'{known}')


def pushed_versions_of_model(store: Store, model_id: int) -> list[str]:
  """Versions pushed of one Model: outputs of executions that took it as 'model'."""
  pushers = [e.execution_id for e in store.get_events_by_artifact_ids(
      [model_id]) if convert.is_input(e) and 'model' in convert.event_keys(e)]
  if not pushers:
    return []
  outputs = [e.artifact_id for e in store.get_events_by_execution_ids(pushers)
             if convert.is_output(e)]
  pushed = [a for a in artifacts(store, outputs).values() if _pushed(a)]
  return [str(a.properties.get('pushed_version'))
          for a in sorted(pushed, key=_version_key)]


def examples_of_span(store: Store, span: int) -> list[ArtifactRecord]:
  """Examples artifacts ingested for one span (one per version or re-run)."""
  # TFX keeps span as a type property on some stores and a custom one on
  # others; a filter over both joins both tables, so ask twice.
  found = {}
  for where in ('properties', 'custom_properties'):
    for artifact in store.get_artifacts(list_options=metadata_store.ListOptions(
        filter_query=f"type = 'Examples' AND {where}.span.int_value = {span}")):
      found[artifact.id] = artifact
  if not found:
    raise LineageError(f'no Examples artifact for span {span} in the store')
  return [convert.artifact_record(found[i]) for i in sorted(found)]


def performance_since_push(store: Store,
                           pushed_model_id: int) -> list[SpanPerformance]:
  """The pushed model measured on each new span, in span order: outputs of
  the DecayChecks that took it as their `served_model` input."""
  checks = [e.execution_id for e in store.get_events_by_artifact_ids(
      [pushed_model_id]) if convert.is_input(e)
            and span_checks.SERVED_MODEL_INPUT in convert.event_keys(e)]
  measured: dict[int, int] = {}  # artifact -> the check that first wrote it
  for event in store.get_events_by_execution_ids(checks):
    if convert.is_output(event):
      measured[event.artifact_id] = min(
          event.execution_id, measured.get(event.artifact_id, event.execution_id))
  checked = executions(store, set(measured.values()))
  result = [span_checks.performance(a, measured[a.id], checked[measured[a.id]].run)
            for a in artifacts(store, measured).values()
            if a.type == span_checks.PERFORMANCE_TYPE]
  return sorted(result, key=lambda p: (p.span is None, p.span or 0, p.artifact))


def drift_since_push(store: Store, version: str) -> list[SpanDrift]:
  """Every span compared with this version's training window, in span order:
  DataDrift artifacts that name the version as the model they measured against."""
  quoted = str(version).replace("'", "''")
  found = store.get_artifacts(list_options=metadata_store.ListOptions(
      filter_query=f"type = '{span_checks.DRIFT_TYPE}' AND "
      f"custom_properties.{span_checks.MODEL_VERSION}.string_value = '{quoted}'"))
  producers = {a: ids[0] for a, ids in
               producer_executions(store, [a.id for a in found]).items()}
  checked = executions(store, set(producers.values()))
  result = []
  for artifact in found:
    execution = producers.get(artifact.id)
    result.append(span_checks.drift(
        convert.artifact_record(artifact), execution,
        checked[execution].run if execution in checked else None))
  return sorted(result, key=lambda d: (d.span is None, d.span or 0, d.artifact))


def _checked_range(store: Store, check_ids: Iterable[int]) -> dict[int, tuple]:
  """check id -> (checked_from, checked_until) in epoch seconds."""
  ranges = {}
  for execution in store.get_executions_by_id(list(check_ids)):
    properties = execution.custom_properties
    ranges[execution.id] = (properties['checked_from'].int_value,
                            properties['checked_until'].int_value)
  return ranges


def _overlap(a: tuple, b: tuple) -> bool:
  return a[0] < b[1] and b[0] < a[1]


def serving_since_push(store: Store, pushed_model_id: int) -> list[ServingWindow]:
  """The serving monitor's windows of this version, newest window first.

  A check reads on from where the last one stopped, so one window can be
  judged in parts by several checks: they are one window here, requests
  added up and features named by any part. A check that read a time range
  again (--since) replaces the older parts it overlaps instead of adding to
  them.
  """
  records = serving_checks.checks_of_pushed_model(store, pushed_model_id)
  ranges = _checked_range(store, {r.check_id for r in records})
  parts: dict[tuple[int, int], list] = {}
  for record in records:  # newest check first
    kept = parts.setdefault((record.window_start, record.window_end), [])
    if not any(_overlap(ranges.get(record.check_id, (0, 0)),
                        ranges.get(k.check_id, (0, 0))) for k in kept):
      kept.append(record)
  windows = []
  for (start, end), kept in parts.items():
    newest = kept[0]
    windows.append(ServingWindow(
        artifact=newest.artifact_id, check=newest.check_id,
        checked_at=float(newest.created), window_start=start, window_end=end,
        requests=sum(k.requests for k in kept),
        skewed_features=list(dict.fromkeys(
            f for k in kept for f in k.skewed_features)),
        anomalous_features=list(dict.fromkeys(
            f for k in kept for f in k.anomalous_features)),
        distances=dict(newest.distances), thresholds=dict(newest.thresholds)))
  return sorted(windows, key=lambda w: w.window_start, reverse=True)
