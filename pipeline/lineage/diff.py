"""What changed between two pipeline runs: inputs, parameters, metrics, outputs.

Each run is read as "node -> the execution that stood for it": a cached step
counts with the parameters of the execution it reused, so only real changes
show up.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional

from pipeline.lineage import artifact_files, convert, queries
from pipeline.lineage.records import (ArtifactRecord, DiffRow, ExecutionRecord,
                                      RunDiff, RunRecord)

# Outputs worth comparing; intermediate ones differ on every real run anyway.
_COMPARED_OUTPUTS = ('Model', 'ModelBlessing', 'PushedModel')


@dataclasses.dataclass
class _NodeView:
  execution: ExecutionRecord
  parameters: dict[str, Any]
  inputs: dict[str, list[ArtifactRecord]]
  outputs: dict[str, list[ArtifactRecord]]


def _flatten(value: Any, prefix: str, into: dict[str, str]):
  if isinstance(value, dict) and value:
    for key, item in value.items():
      _flatten(item, f'{prefix}.{key}', into)
  else:
    into[prefix] = json.dumps(value, sort_keys=True) if not isinstance(
        value, str) else value


def _run_view(store: queries.Store, run: RunRecord) -> dict[str, _NodeView]:
  executions = queries.executions(
      store, [e.id for e in store.get_executions_by_context(run.id)])
  events = store.get_events_by_execution_ids(list(executions))
  artifacts = queries.artifacts(store, {e.artifact_id for e in events})
  sources = {}
  for execution in executions.values():
    if execution.cached:
      execution.cache_source = queries.cache_source(store, execution.id)
      if execution.cache_source:
        sources[execution.id] = execution.cache_source
  source_records = queries.executions(store, set(sources.values()))
  views = {}
  for execution in sorted(executions.values(), key=lambda e: e.started):
    source = source_records.get(sources.get(execution.id))
    parameters: dict[str, str] = {}
    for key, value in (source or execution).properties.items():
      _flatten(value, key, parameters)
    view = _NodeView(execution, parameters, {}, {})
    for event in events:
      if event.execution_id != execution.id:
        continue
      target = (view.inputs if convert.is_input(event) else
                view.outputs if convert.is_output(event) else None)
      if target is None:
        continue
      for key in convert.event_keys(event):
        target.setdefault(key, []).append(artifacts[event.artifact_id])
    views[execution.node] = view
  return views


def _labels(artifacts: list[ArtifactRecord]) -> str:
  return '; '.join(convert.artifact_label(a)
                   for a in sorted(artifacts, key=lambda a: a.id))


def _status(view: Optional[_NodeView]) -> str:
  if view is None:
    return 'did not run'
  execution = view.execution
  if execution.cached and execution.cache_source:
    return f'CACHED (reused execution #{execution.cache_source})'
  return f'{execution.state} (execution #{execution.id})'


def _metrics(view: Optional[_NodeView]) -> dict[str, float]:
  if view is None:
    return {}
  for artifact in view.outputs.get('evaluation', []):
    if os.path.isdir(artifact.uri):
      return artifact_files.overall_metrics(artifact.uri).get('candidate', {})
  return {}


def _node_rows(node: str, a: Optional[_NodeView],
               b: Optional[_NodeView]) -> list[DiffRow]:
  rows = []
  status_a, status_b = _status(a), _status(b)
  if status_a.split(' ')[0] != status_b.split(' ')[0] or a is None or b is None:
    rows.append(DiffRow('status', node, 'execution', status_a, status_b))
  inputs_a, inputs_b = (a.inputs if a else {}), (b.inputs if b else {})
  for key in sorted(set(inputs_a) | set(inputs_b)):
    ids_a = sorted(x.id for x in inputs_a.get(key, []))
    ids_b = sorted(x.id for x in inputs_b.get(key, []))
    if ids_a != ids_b:
      rows.append(DiffRow('inputs', node, key, _labels(inputs_a.get(key, [])),
                          _labels(inputs_b.get(key, []))))
  params_a, params_b = (a.parameters if a else {}), (b.parameters if b else {})
  for key in sorted(set(params_a) | set(params_b)):
    if params_a.get(key) != params_b.get(key):
      rows.append(DiffRow('parameters', node, key, params_a.get(key),
                          params_b.get(key)))
  metrics_a, metrics_b = _metrics(a), _metrics(b)
  for key in sorted(set(metrics_a) | set(metrics_b)):
    if metrics_a.get(key) != metrics_b.get(key):
      rows.append(DiffRow('metrics', node, key, metrics_a.get(key),
                          metrics_b.get(key)))
  outputs_a, outputs_b = (a.outputs if a else {}), (b.outputs if b else {})
  for key in sorted(set(outputs_a) | set(outputs_b)):
    kept_a = [x for x in outputs_a.get(key, []) if x.type in _COMPARED_OUTPUTS]
    kept_b = [x for x in outputs_b.get(key, []) if x.type in _COMPARED_OUTPUTS]
    if (kept_a or kept_b) and _labels(kept_a) != _labels(kept_b):
      rows.append(DiffRow('outputs', node, key, _labels(kept_a),
                          _labels(kept_b)))
  return rows


def diff_runs(store: queries.Store, run_a: RunRecord,
              run_b: RunRecord) -> RunDiff:
  """Rows for every input, parameter, metric and key output that differs."""
  view_a, view_b = _run_view(store, run_a), _run_view(store, run_b)
  nodes = list(view_b) + [n for n in view_a if n not in view_b]
  rows = []
  for node in nodes:
    rows.extend(_node_rows(node, view_a.get(node), view_b.get(node)))
  return RunDiff(run_a=run_a, run_b=run_b, rows=rows)
