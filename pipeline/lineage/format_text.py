"""Renders lineage records as readable text for a terminal: tables and trees.

Trees follow the data: upstream trees list each artifact under the execution
that consumed it, downstream trees the other way round. A node reached twice
is printed once and referred to afterwards.
"""

from __future__ import annotations

import datetime
import json
import os
import textwrap
from typing import Any, Optional

from metadata import releases
from pipeline.lineage import confidence
from pipeline.lineage.convert import artifact_label
from pipeline.lineage.records import (ArtifactRecord, ArtifactReport,
                                      ExecutionRecord, LineageGraph,
                                      ModelTrace, RunDiff, RunRecord)


def when(seconds: float) -> str:
  return datetime.datetime.fromtimestamp(seconds).strftime('%Y-%m-%d %H:%M:%S')


def duration(seconds: float) -> str:
  if seconds < 60:
    return f'{seconds:.1f}s'
  minutes, secs = divmod(int(round(seconds)), 60)
  return f'{minutes}m{secs:02d}s'


def execution_label(execution: ExecutionRecord) -> str:
  text = (f'{execution.node} #{execution.id} {execution.state.lower()}, '
          f'{when(execution.started)}, {duration(execution.duration_s)}')
  if execution.cached:
    source = (f' (reused execution #{execution.cache_source})'
              if execution.cache_source else '')
    text = (f'{execution.node} #{execution.id} from cache{source}, '
            f'{when(execution.started)}')
  return text


def _short(value: Any, limit: int = 70) -> str:
  if isinstance(value, float):
    return f'{value:.4f}'
  text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
  text = ' '.join(text.split())
  return text if len(text) <= limit else text[:limit - 3] + '...'


# --- runs -------------------------------------------------------------------


def _pushed_text(run: RunRecord) -> str:
  if not run.pushed_version:
    # Say why nothing was pushed when the runner recorded it.
    reason_known = run.outcome in ('not blessed', 'not retrained')
    return f'- ({run.outcome})' if reason_known else '-'
  return run.pushed_version + (' (reused)' if run.pushed_reused else '')


def _note(label: str, text: str) -> list[str]:
  """A labelled note wrapped to a few lines; the JSON has all of it."""
  lines = textwrap.wrap(' '.join(text.split()), width=100, max_lines=3,
                        placeholder=' ...') or ['']
  indent = ' ' * (len(label) + 2)
  return [f'{label}: {lines[0]}'] + [indent + line for line in lines[1:]]


def _notes(run: RunRecord) -> list[str]:
  """Lines under a run's row: what triggered a retraining, why a run failed."""
  notes = []
  if run.trigger in ('decay', 'drift', 'skew') and run.trigger_detail:
    notes += _note('trigger', run.trigger_detail)
  if run.why:
    notes += _note('why', run.why)
  return notes


def runs(records: list[RunRecord]) -> str:
  # Stores written before the runner recorded triggers keep their old table.
  with_trigger = any(r.trigger is not None for r in records)
  header = ('ID', 'STARTED', 'DURATION', 'STATUS') + (
      ('TRIGGER',) if with_trigger else ()) + ('STEPS', 'CACHED', 'PUSHED',
                                               'RUN NAME')
  rows = [(
      str(r.id), when(r.started), duration(r.duration_s), r.status) + (
          (r.trigger or 'unknown',) if with_trigger else ()) + (
      str(r.executions) + (f' ({r.nodes[0]})' if len(r.nodes) == 1 else ''),
      str(r.cached), _pushed_text(r), r.name)
          for r in records]
  widths = [max(len(row[i]) for row in [header] + rows)
            for i in range(len(header))]

  def line(row) -> str:
    return '  '.join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()

  out = [line(header)]
  for record, row in zip(records, rows):
    out.append(line(row))
    out += [' ' * (widths[0] + 2) + note for note in _notes(record)]
  return '\n'.join(out)


# --- trees ------------------------------------------------------------------


def _index(graph: LineageGraph):
  producer, inputs, consumers, outputs = {}, {}, {}, {}
  for edge in graph.edges:
    if edge.kind == 'output':
      producer.setdefault(edge.artifact, edge.execution)
      outputs.setdefault(edge.execution, []).append((edge.key, edge.artifact))
    else:
      inputs.setdefault(edge.execution, []).append((edge.key, edge.artifact))
      consumers.setdefault(edge.artifact, []).append((edge.key, edge.execution))
  return producer, inputs, consumers, outputs


def upstream_tree(graph: LineageGraph, root: int) -> str:
  """The root artifact, then what each producing execution consumed."""
  producer, inputs, _, _ = _index(graph)
  lines, seen = [], set()

  def visit(artifact_id: int, key: Optional[str], prefix: str, last: bool,
            top: bool):
    artifact = graph.artifacts[artifact_id]
    branch = '' if top else ('└─ ' if last else '├─ ')
    label = (f'{key}: ' if key else '') + artifact_label(artifact)
    execution_id = producer.get(artifact_id)
    if artifact_id in seen:
      lines.append(f'{prefix}{branch}{label}  (see above)')
      return
    seen.add(artifact_id)
    if execution_id is None:
      lines.append(f'{prefix}{branch}{label}')
      return
    lines.append(f'{prefix}{branch}{label}  <- '
                 f'{execution_label(graph.executions[execution_id])}')
    children = sorted(inputs.get(execution_id, []))
    child_prefix = prefix + ('' if top else ('   ' if last else '│  '))
    for i, (child_key, child) in enumerate(children):
      visit(child, child_key, child_prefix, i == len(children) - 1, False)

  visit(root, None, '', True, True)
  return '\n'.join(lines)


def downstream_tree(graph: LineageGraph, root: int) -> str:
  """The root artifact, the executions that read it, what they wrote, ..."""
  _, _, consumers, outputs = _index(graph)
  lines, seen = [artifact_label(graph.artifacts[root])], {root}

  def visit_artifact(artifact_id: int, prefix: str):
    children = sorted(consumers.get(artifact_id, []), key=lambda c: c[1])
    for i, (key, execution_id) in enumerate(children):
      last = i == len(children) - 1
      lines.append(f'{prefix}{"└─ " if last else "├─ "}as {key} by '
                   f'{execution_label(graph.executions[execution_id])}')
      execution_prefix = prefix + ('   ' if last else '│  ')
      produced = sorted(outputs.get(execution_id, []))
      for j, (out_key, out_id) in enumerate(produced):
        out_last = j == len(produced) - 1
        label = f'{out_key}: {artifact_label(graph.artifacts[out_id])}'
        if out_id in seen:
          lines.append(f'{execution_prefix}{"└─ " if out_last else "├─ "}'
                       f'{label}  (see above)')
          continue
        seen.add(out_id)
        lines.append(f'{execution_prefix}{"└─ " if out_last else "├─ "}{label}')
        visit_artifact(out_id, execution_prefix + ('   ' if out_last else '│  '))

  visit_artifact(root, '')
  return '\n'.join(lines)


# --- model trace --------------------------------------------------------------


def _execution_line(graph: LineageGraph, execution_id: Optional[int]) -> str:
  if execution_id is None or execution_id not in graph.executions:
    return f'execution #{execution_id}' if execution_id else '-'
  return execution_label(graph.executions[execution_id])


def _threshold_text(threshold) -> str:
  parts = []
  if threshold.lower is not None:
    parts.append(f'>= {threshold.lower:g}')
  if threshold.upper is not None:
    parts.append(f'<= {threshold.upper:g}')
  if threshold.change_direction:
    change = (threshold.change_absolute if threshold.change_absolute is not None
              else threshold.change_relative)
    kind = 'absolute' if threshold.change_absolute is not None else 'relative'
    parts.append(f'change vs baseline {change:+g} ({kind}, '
                 f'{threshold.change_direction.lower().replace("_", " ")})')
  return f'{threshold.metric} ({threshold.slices}): ' + ', '.join(parts)


def _code_lines(code: dict[str, str], version) -> list[str]:
  lines = [f'  code        {key} = {value}' for key, value in sorted(code.items())]
  return lines + ([f'  code ver.   {version}'] if version else [])


def _evaluation_lines(graph: LineageGraph, evaluation) -> list[str]:
  verdict = {True: 'BLESSED', False: 'NOT blessed', None: 'unknown'}
  out = ['', 'Evaluation',
         f'  step        {_execution_line(graph, evaluation.execution)}',
         f'  blessing    {verdict[evaluation.blessed]}'
         f'  (ModelBlessing #{evaluation.blessing})']
  for name, value in sorted(evaluation.metrics.items()):
    base = evaluation.baseline_metrics.get(name)
    base_text = f'   baseline {base:.4f}' if base is not None else ''
    out.append(f'  metric      {name} = {value:.4f}{base_text}')
  for threshold in evaluation.thresholds:
    out.append(f'  threshold   {_threshold_text(threshold)}')
  out += confidence.evaluation_lines(evaluation.confidence_intervals)
  if evaluation.baseline_model:
    pushed = ', '.join(evaluation.baseline_pushed_versions) or 'never pushed'
    out.append(f'  baseline    Model #{evaluation.baseline_model} '
               f'(pushed as {pushed})')
  else:
    out.append('  baseline    none: no baseline model was resolved, so only '
               'the absolute thresholds applied')
  return out


def _training_lines(graph: LineageGraph, training) -> list[str]:
  out = ['', 'Training',
         f'  step        {_execution_line(graph, training.execution)}',
         f'  steps       train {training.train_steps}, '
         f'eval {training.eval_steps}']
  for key, value in sorted(training.hyperparameters.items()):
    out.append(f'  hyperparam  {key} = {_short(value)}')
  return out + _code_lines(training.code, training.code_version)


def _transform_lines(graph: LineageGraph, transform) -> list[str]:
  return ['', 'Transform',
          f'  step        {_execution_line(graph, transform.execution)}',
          f'  graph       TransformGraph #{transform.transform_graph}  '
          f'{transform.uri}'] + _code_lines(transform.code,
                                             transform.code_version)


def _data_lines(graph: LineageGraph, spans) -> list[str]:
  out = ['', f'Data ({len(spans)} span(s))']
  for span in spans:
    out.append(f'  span {span.span}'
               + (f' version {span.version}' if span.version is not None else '')
               + f'  Examples #{span.examples}  splits '
               f'{",".join(span.split_names)}  <- '
               + (execution_label(span.ingestion) if span.ingestion else
                  _execution_line(graph, span.produced_by)))
    for pattern in span.patterns:
      out.append(f'    pattern      {span.input_base}/{pattern}')
    for data_file in span.files:
      out.append(f'    file         {data_file.path}  ({data_file.size} bytes)')
    out.append(f'    fingerprint  {span.fingerprint}')
    if span.fingerprint_now is not None:
      same = span.fingerprint_now == span.fingerprint
      out.append('    on disk now  ' + ('unchanged' if same else
                                         f'CHANGED: {span.fingerprint_now}'))
  return out


def _check_lines(trace: ModelTrace) -> list[str]:
  out = ['', 'Schema and data checks']
  for schema in trace.schemas:
    out.append(f'  schema       Schema #{schema.id} by {schema.producer_node}  '
               f'{schema.uri}')
  for stats in trace.statistics:
    out.append(f'  statistics   ExampleStatistics #{stats.id} by '
               f'{stats.producer_node}')
  for anomalies in trace.anomalies:
    found = sum(len(v) for v in anomalies.anomalies.values())
    out.append(f'  anomalies    ExampleAnomalies #{anomalies.artifact} '
               f'(of statistics #{anomalies.statistics}): '
               + ('none' if not found else f'{found} found'))
    for split, lines in sorted(anomalies.anomalies.items()):
      for line in lines:
        out.append(f'                 [{split}] {line}')
  return out


def _metrics_text(metrics: dict[str, float]) -> str:
  return '  '.join(f'{name} {metrics[name]:.4f}' for name in sorted(metrics))


def _performance_lines(trace: ModelTrace) -> list[str]:
  out = ['', 'Since the push: the model on each new span (DecayCheck)']
  if not trace.performance:
    return out + ['  no span measured since this version was pushed']
  push = next((p.push_metrics for p in trace.performance if p.push_metrics), {})
  if push:
    out.append(f'  at push     {_metrics_text(push)}')
  for measured in trace.performance:
    if not measured.measured:
      out.append(f'  span {str(measured.span):<6} not measured: '
                 f'{measured.reason or "-"}')
      continue
    count = (f'  ({measured.example_count} examples)'
             if measured.example_count is not None else '')
    flag = (f'  DECAYED: {measured.reason}' if measured.decayed else '')
    out.append(f'  span {str(measured.span):<6} {_metrics_text(measured.metrics)}'
               f'{count}{flag}')
  return out


def _feature_text(feature) -> str:
  def number(value):
    return '?' if value is None else f'{value:.4f}'
  return (f'{feature.feature} {number(feature.distance)} '
          f'{">" if feature.drifted else "<="} {number(feature.threshold)}')


def _closeness(feature) -> float:
  if feature.distance is None or not feature.threshold:
    return 0.0
  return feature.distance / feature.threshold


def _drift_line(drift) -> str:
  """One line per span: the crossings named, the rest counted (JSON has all)."""
  crossed = [f for f in drift.features if f.drifted]
  within = [f for f in drift.features if not f.drifted]
  if crossed:
    others = (f'  ({len(within)} other feature(s) within their thresholds)'
              if within else '')
    return ('DRIFTED: ' + ', '.join(_feature_text(f) for f in crossed)
            + others)
  if not within:
    return 'no drift'
  closest = max(within, key=_closeness)
  return (f'no drift  ({len(within)} feature(s) within their thresholds; '
          f'closest {_feature_text(closest)})')


def _drift_lines(trace: ModelTrace) -> list[str]:
  out = ['', 'Since the push: drift of each new span from the training window '
         '(DriftCheck)']
  if not trace.drift:
    return out + ['  no span compared since this version was pushed']
  for drift in trace.drift:
    out.append(f'  span {str(drift.span):<6} '
               + (_drift_line(drift) if drift.measured else 'not measured'))
  return out


# Windows listed one per line under the serving summary; the JSON has all.
_SERVING_WINDOWS_SHOWN = 4


def _named_in(windows, features_of, lead: str = '') -> str:
  """'none', or the features any window named, and in how many windows."""
  named = list(dict.fromkeys(f for w in windows for f in features_of(w)))
  if not named:
    return 'none'
  count = sum(1 for w in windows if features_of(w))
  return f'{lead}{", ".join(named)}  (in {count} of {len(windows)} window(s))'


def _serving_window_line(window) -> str:
  found = []
  if window.skewed_features:
    found.append('SKEW: ' + ', '.join(
        f'{name} {window.distances.get(name, float("nan")):.4f} > '
        f'{window.thresholds.get(name, float("nan")):.4f}'
        for name in window.skewed_features))
  if window.anomalous_features:
    found.append('anomalies: ' + ', '.join(window.anomalous_features))
  return (f'  {when(window.window_start)}  {window.requests:>6} requests  '
          + ('; '.join(found) or 'no skew'))


def _serving_lines(trace: ModelTrace) -> list[str]:
  out = ['', 'Since the push: the requests it served, as the serving monitor '
         'judged them (ServingMonitor)']
  windows = trace.serving
  if not windows:
    return out + ['  no serving checks recorded for this version']
  newest = max(windows, key=lambda w: (w.checked_at, w.check))
  out += [f'  served       {sum(w.requests for w in windows)} requests since '
          f'{when(min(w.window_start for w in windows))} in {len(windows)} '
          f'window(s); newest check #{newest.check} at {when(newest.checked_at)}',
          f'  skew         {_named_in(windows, lambda w: w.skewed_features, "on ")}',
          f'  anomalies    {_named_in(windows, lambda w: w.anomalous_features)}']
  out += [_serving_window_line(w) for w in windows[:_SERVING_WINDOWS_SHOWN]]
  if len(windows) > _SERVING_WINDOWS_SHOWN:
    out.append(f'  ... {len(windows) - _SERVING_WINDOWS_SHOWN} older window(s) '
               '(--format json lists them all)')
  return out


_RELEASE_VERBS = {'promote': 'promoted', 'rollback': 'restored by a rollback',
                  'canary': 'made the canary'}


def _release_lines(trace: ModelTrace) -> list[str]:
  """e.g. 'release      stable since 2026-11-27 14:30:05, promoted because ...'."""
  found = releases.role_of_version(trace.releases, trace.version)
  if found is None:
    return []
  role, action = found
  if role == 'rolled back':
    return [f'  release      rolled back at {when(action.time)} because {action.reason}']
  return [f'  release      {role} since {when(action.time)}, '
          f'{_RELEASE_VERBS[action.action]} because {action.reason}']


def model_trace(trace: ModelTrace) -> str:
  """Summary sections (health since the push, evaluation, training, data,
  checks), then the tree."""
  graph = trace.graph
  out = [f'Pushed model version {trace.version}  (PushedModel #'
         f'{trace.pushed_model.id})']
  if trace.destination:
    out.append(f'  served from  {trace.destination}')
  if trace.destination_exists is False:
    out.append(f'  WARNING      the version folder is gone from disk: version '
               f'{trace.version} cannot be served (TF Serving loads the newest '
               f'version folder still in {os.path.dirname(trace.destination)})')
  out += _release_lines(trace)
  if trace.model:
    out.append(f'  model        Model #{trace.model.id}  {trace.model.uri}')
  out += _performance_lines(trace)
  out += _drift_lines(trace)
  out += _serving_lines(trace)
  if trace.evaluation:
    out += _evaluation_lines(graph, trace.evaluation)
  if trace.training:
    out += _training_lines(graph, trace.training)
  if trace.transform:
    out += _transform_lines(graph, trace.transform)
  out += _data_lines(graph, trace.spans)
  out += _check_lines(trace)
  out += ['', 'Lineage (each artifact <- the step that made it)',
          upstream_tree(graph, trace.pushed_model.id)]
  return '\n'.join(out)


# --- artifact report ----------------------------------------------------------


def _properties(artifact: ArtifactRecord) -> list[str]:
  return [f'  {key:<18} {_short(value)}'
          for key, value in artifact.properties.items()
          if key not in ('tfx_version', 'is_external')]


def artifact_report(report: ArtifactReport) -> str:
  artifact = report.artifact
  out = [f'{artifact_label(artifact)}  ({artifact.state.lower()}, created '
         f'{when(artifact.created)} by {artifact.producer_node or "-"})',
         f'  uri                {artifact.uri}']
  out += _properties(artifact)
  out += ['', 'Upstream (made from)', upstream_tree(report.upstream, artifact.id)]
  out += ['', 'Downstream (used by)',
          downstream_tree(report.downstream, artifact.id)]
  out += ['', 'Models trained on it']
  if not report.trained_models:
    out.append('  none')
  for model in report.trained_models:
    pushed = (', '.join(model.pushed_versions) if model.pushed_versions
              else 'not pushed')
    out.append(f'  Model #{model.model}  trainer #{model.trainer_execution}  '
               f'run {model.run}  pushed: {pushed}')
  return '\n'.join(out)


# --- run diff -------------------------------------------------------------------


def run_diff(result: RunDiff) -> str:
  a, b = result.run_a, result.run_b
  out = [f'A: run {a.id} {a.name}  {a.status}  pushed {a.pushed_version or "-"}',
         f'B: run {b.id} {b.name}  {b.status}  pushed {b.pushed_version or "-"}']
  if not result.rows:
    return '\n'.join(out + ['', 'No differences in inputs, parameters, '
                            'metrics or outputs.'])
  for section in ('status', 'inputs', 'parameters', 'metrics', 'outputs'):
    rows = [r for r in result.rows if r.section == section]
    if not rows:
      continue
    out += ['', section.capitalize()]
    for row in rows:
      out.append(f'  {row.node} {row.name}')
      out.append(f'    A: {_short(row.a if row.a not in (None, "") else "-", 100)}')
      out.append(f'    B: {_short(row.b if row.b not in (None, "") else "-", 100)}')
  return '\n'.join(out)
