"""What one step of a trace did, read from its execution and artifacts.

Ingestion (span, files, fingerprints), Transform and Trainer (code, steps,
hyperparameters) and Evaluator (metrics, thresholds, blessing, baseline).
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

from pipeline.lineage import artifact_files, confidence, queries, walk
from pipeline.lineage.records import (ArtifactRecord, Edge, EvaluationRecord,
                                      LineageGraph, SpanRecord, Threshold,
                                      TrainingRecord, TransformRecord)


def _resolve_pattern(pattern: str, span: Any, version: Any) -> str:
  # A cached ExampleGen may record the pattern before {SPAN} was filled in.
  if span is not None:
    pattern = pattern.replace('{SPAN}', str(span))
  if version is not None:
    pattern = pattern.replace('{VERSION}', str(version))
  return pattern


def span_record(store: queries.Store, graph: LineageGraph,
                 examples: ArtifactRecord) -> SpanRecord:
  producer = walk.producer_of(graph, examples.id)
  source = graph.executions[producer].cache_source if producer else None
  # A cached execution copies the unresolved properties of its pipeline node;
  # the execution that really ingested the data recorded what it read.
  original = (queries.executions(store, [source])[source] if source else
              graph.executions.get(producer))
  props = original.properties if original else {}
  span = examples.properties.get('span', props.get('span'))
  version = examples.properties.get('version', props.get('version'))
  input_config = props.get('input_config')
  splits = input_config.get('splits', []) if isinstance(input_config,
                                                        dict) else []
  input_base = props.get('input_base')
  patterns = [_resolve_pattern(s.get('pattern', ''), span, version)
              for s in splits]
  files, fingerprints = [], []
  if isinstance(input_base, str) and os.path.isdir(input_base):
    for split, pattern in zip(splits, patterns):
      split_files = artifact_files.data_files(input_base, pattern)
      files.extend(split_files)
      fingerprints.append(
          artifact_files.fingerprint(split.get('name', ''), split_files))
  recorded = props.get('input_fingerprint',
                       examples.properties.get('input_fingerprint'))
  split_names = examples.properties.get('split_names') or []
  return SpanRecord(
      examples=examples.id,
      span=span,
      version=version,
      split_names=split_names if isinstance(split_names, list) else [],
      input_base=input_base if isinstance(input_base, str) else None,
      patterns=patterns,
      fingerprint=recorded,
      files=files,
      fingerprint_now='\n'.join(fingerprints) if fingerprints else None,
      produced_by=source or producer,
      ingestion=original,
  )


def _number(value: Any) -> Optional[float]:
  if isinstance(value, dict):
    value = value.get('value')
  return float(value) if isinstance(value, (int, float)) else None


def _slices_text(slicing_specs: list[dict[str, Any]]) -> str:
  names = []
  for spec in slicing_specs:
    keys = spec.get('feature_keys', []) + sorted(spec.get('feature_values', {}))
    names.append(', '.join(keys) if keys else 'overall')
  return '; '.join(names) or 'overall'


def _threshold(metric: str, spec: dict[str, Any],
               slices: str = 'all slices') -> Threshold:
  value = spec.get('value_threshold', spec.get('valueThreshold', {}))
  change = spec.get('change_threshold', spec.get('changeThreshold', {}))
  return Threshold(
      metric=metric,
      lower=_number(value.get('lower_bound', value.get('lowerBound'))),
      upper=_number(value.get('upper_bound', value.get('upperBound'))),
      change_direction=change.get('direction'),
      change_absolute=_number(change.get('absolute')),
      change_relative=_number(change.get('relative')),
      slices=slices,
  )


def thresholds(eval_config: Any) -> list[Threshold]:
  """Thresholds from the Evaluator's eval_config execution property."""
  result = []
  if not isinstance(eval_config, dict):
    return result
  for spec in eval_config.get('metrics_specs',
                              eval_config.get('metricsSpecs', [])):
    for metric in spec.get('metrics', []):
      name = metric.get('config_name') or metric.get('class_name', '?')
      if 'threshold' in metric:
        result.append(_threshold(name, metric['threshold']))
      for per_slice in metric.get('per_slice_thresholds', []):
        result.append(_threshold(name, per_slice.get('threshold', {}),
                                 _slices_text(per_slice.get('slicing_specs', []))))
    for name, threshold in sorted(spec.get('thresholds', {}).items()):
      result.append(_threshold(name, threshold))
  return result


def evaluation_of(store: queries.Store, graph: LineageGraph,
                  evaluator: int) -> EvaluationRecord:
  """Metrics, thresholds, blessing and baseline of one Evaluator execution."""
  outputs = queries.artifacts(
      store, [a for _, a in queries.execution_outputs(store, evaluator)])
  blessing = next((a for a in outputs.values() if a.type == 'ModelBlessing'),
                  None)
  evaluation = next(
      (a for a in outputs.values() if a.type == 'ModelEvaluation'), None)
  if evaluation is not None and graph is not None:
    graph.artifacts.setdefault(evaluation.id, evaluation)
    evaluation.producer_node = graph.executions[evaluator].node
    graph.edges.append(Edge(evaluation.id, evaluator, 'output', 'evaluation'))
  metrics = (artifact_files.overall_metrics(evaluation.uri)
             if evaluation and os.path.isdir(evaluation.uri) else {})
  baseline = next((a for k, a in queries.execution_inputs(store, evaluator)
                   if k == 'baseline_model'), None)
  blessed = None
  if blessing is not None:
    flag = blessing.properties.get('blessed')
    blessed = (bool(flag) if flag is not None else
               artifact_files.blessing_marker(blessing.uri))
  execution = queries.executions(store, [evaluator])[evaluator]
  return EvaluationRecord(
      execution=evaluator,
      blessing=blessing.id if blessing else None,
      evaluation=evaluation.id if evaluation else None,
      blessed=blessed,
      metrics=metrics.get('candidate', {}),
      baseline_metrics=metrics.get('baseline', {}),
      thresholds=thresholds(execution.properties.get('eval_config')),
      baseline_model=baseline,
      baseline_pushed_versions=(queries.pushed_versions_of_model(
          store, baseline) if baseline else []),
      confidence_intervals=(confidence.of_blessing_properties(blessing.properties)
                            if blessing else None),
  )


def _steps(value: Any) -> Optional[int]:
  if isinstance(value, dict) and 'num_steps' in value:
    return int(value['num_steps'])
  return None


def _hyperparameters(graph: LineageGraph, trainer: int) -> dict[str, Any]:
  custom = graph.executions[trainer].properties.get('custom_config')
  custom = custom if isinstance(custom, dict) else {}
  # Our pipeline nests them under "hyperparameters"; others put them flat.
  params = dict(custom.get('hyperparameters') or
                {k: v for k, v in custom.items() if k != 'code_version'})
  for _, artifact_id in walk.inputs_of(graph, trainer):
    artifact = graph.artifacts[artifact_id]
    if artifact.type == 'HyperParameters':
      path = os.path.join(artifact.uri, 'best_hyperparameters.txt')
      if os.path.isfile(path):
        with open(path) as f:
          tuned = json.load(f)
        params.update(tuned.get('values', tuned))
  return params


_CODE_PROPERTIES = ('module_file', 'module_path', 'run_fn', 'trainer_fn',
                    'preprocessing_fn')


def _code(props: dict[str, Any]) -> tuple[dict[str, str], Optional[str]]:
  """The user code an execution ran, and its version where one is recorded."""
  code = {k: str(props[k]) for k in _CODE_PROPERTIES if props.get(k)}
  # TFX packages a module file as a wheel whose name carries a content hash
  # ("module@.../tfx_user_code_Trainer-0.0+<hash>-py3-none-any.whl").
  code_version = None
  module_path = props.get('module_path', '')
  if isinstance(module_path, str) and '+' in module_path:
    code_version = module_path.split('+', 1)[1].split('-', 1)[0]
  # Pipelines may also record one themselves (ours: custom_config.code_version).
  custom = props.get('custom_config')
  for source in (props, custom if isinstance(custom, dict) else {}):
    for key, value in source.items():
      if 'commit' in key or key.endswith('code_version'):
        code_version = str(value)
  return code, code_version


def transform_of(graph: LineageGraph,
                 transform_graph: ArtifactRecord) -> TransformRecord:
  execution = walk.producer_of(graph, transform_graph.id)
  code, code_version = _code(graph.executions[execution].properties)
  return TransformRecord(execution=execution,
                         transform_graph=transform_graph.id,
                         uri=transform_graph.uri, code=code,
                         code_version=code_version)


def training_of(graph: LineageGraph, model: ArtifactRecord,
                trainer: int) -> TrainingRecord:
  props = graph.executions[trainer].properties
  code, code_version = _code(props)
  return TrainingRecord(
      execution=trainer,
      model=model.id,
      train_steps=_steps(props.get('train_args')),
      eval_steps=_steps(props.get('eval_args')),
      hyperparameters=_hyperparameters(graph, trainer),
      code=code,
      code_version=code_version,
  )
