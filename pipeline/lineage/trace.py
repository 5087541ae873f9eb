"""Answers built on lineage graphs: where a pushed model came from, and which
models were trained on a piece of data.

A trace reads the graph by TFX's standard artifact types (Examples, Model,
ModelBlessing, ...) and node-independent event keys, so any TFX pipeline works.
"""

from __future__ import annotations

import os
from typing import Optional

from metadata import releases
from pipeline import config as pipeline_config
from pipeline.lineage import artifact_files, queries, steps, walk
from pipeline.lineage.records import (AnomaliesRecord, ArtifactRecord,
                                      ArtifactReport, LineageGraph, ModelTrace,
                                      TrainedModel)


def _ingested_examples(graph: LineageGraph) -> list[ArtifactRecord]:
  """Examples made from files rather than from other Examples (ExampleGen's)."""
  result = []
  for examples in walk.artifacts_of_type(graph, 'Examples'):
    producer = walk.producer_of(graph, examples.id)
    made_from_examples = producer is not None and any(
        graph.artifacts[a].type == 'Examples' for _, a in walk.inputs_of(graph, producer))
    if not made_from_examples:
      result.append(examples)
  return result


def _data_checks(store: queries.Store, graph: LineageGraph,
                 examples: list[ArtifactRecord]):
  """Statistics, inferred schemas and anomalies computed on the ingested data.

  They sit beside the model's ancestry rather than in it (a schema check
  gates the run, it does not feed the model), so they are found one step
  downstream of each ingested Examples artifact.
  """
  statistics, schemas, anomalies = [], [], []
  for example in examples:
    down = walk.downstream(store, example.id, max_hops=4)
    for stats in walk.artifacts_of_type(down, 'ExampleStatistics'):
      producer = walk.producer_of(down, stats.id)
      # Transform also writes statistics, of its own outputs: not data checks.
      if producer is None or any(
          down.artifacts[e.artifact].type == 'Examples'
          for e in down.edges
          if e.execution == producer and e.kind == 'output'):
        continue
      statistics.append(stats)
      _attach(graph, down, stats.id)
      for edge in down.edges:
        if edge.kind != 'input' or edge.artifact != stats.id:
          continue
        for out in down.edges:
          if out.execution != edge.execution or out.kind != 'output':
            continue
          artifact = down.artifacts[out.artifact]
          if artifact.type == 'Schema':
            schemas.append(artifact)
          elif artifact.type == 'ExampleAnomalies':
            anomalies.append(AnomaliesRecord(
                artifact=artifact.id,
                produced_by=_original(down, out.execution),
                statistics=stats.id,
                anomalies=(artifact_files.anomalies_by_split(artifact.uri)
                           if os.path.isdir(artifact.uri) else {}),
            ))
          else:
            continue
          _attach(graph, down, artifact.id)
  return (_unique(statistics), _unique(schemas),
          list({a.artifact: a for a in anomalies}.values()))


def _original(graph: LineageGraph, execution_id: int) -> int:
  execution = graph.executions[execution_id]
  return execution.cache_source or execution_id


def _attach(graph: LineageGraph, source: LineageGraph, artifact_id: int):
  """Copies an artifact, its (original) producer and its input edge."""
  if artifact_id in graph.artifacts:
    return
  graph.artifacts[artifact_id] = source.artifacts[artifact_id]
  for edge in source.edges:
    if edge.artifact != artifact_id or edge.kind != 'output':
      continue
    execution = source.executions[edge.execution]
    if execution.cached and execution.cache_source in source.executions:
      continue  # the original execution of the same step is drawn instead
    graph.executions.setdefault(execution.id, execution)
    graph.edges.append(edge)
    for input_edge in source.edges:
      if (input_edge.execution == execution.id and input_edge.kind == 'input'
          and input_edge.artifact in graph.artifacts):
        graph.edges.append(input_edge)
    break


def _unique(records: list[ArtifactRecord]) -> list[ArtifactRecord]:
  return sorted({r.id: r for r in records}.values(), key=lambda r: r.id)


def trace_pushed_model(store: queries.Store,
                       version: Optional[str] = None) -> ModelTrace:
  """The full story of a pushed version (default: the one being served)."""
  pushed = queries.find_pushed_model(store, version)
  graph = walk.upstream(store, pushed.id)
  pushed = graph.artifacts[pushed.id]
  pusher = walk.producer_of(graph, pushed.id)
  pusher_inputs = dict(walk.inputs_of(graph, pusher)) if pusher else {}
  model = graph.artifacts.get(pusher_inputs.get('model'))
  blessing = graph.artifacts.get(pusher_inputs.get('model_blessing'))
  evaluation = training = None
  if blessing is not None and walk.producer_of(graph, blessing.id):
    evaluation = steps.evaluation_of(store, graph, walk.producer_of(graph, blessing.id))
  transform = None
  if model is not None and walk.producer_of(graph, model.id):
    trainer = walk.producer_of(graph, model.id)
    training = steps.training_of(graph, model, trainer)
    transform_graph = next((graph.artifacts[a] for k, a in walk.inputs_of(graph, trainer)
                            if graph.artifacts[a].type == 'TransformGraph'), None)
    if transform_graph is not None and walk.producer_of(graph, transform_graph.id):
      transform = steps.transform_of(graph, transform_graph)
  ingested = _ingested_examples(graph)
  statistics, schemas, anomalies = _data_checks(store, graph, ingested)
  version = str(pushed.properties.get('pushed_version'))
  destination = pushed.properties.get('pushed_destination')
  return ModelTrace(
      pushed_model=pushed,
      version=version,
      destination=destination,
      model=model,
      evaluation=evaluation,
      training=training,
      spans=sorted((steps.span_record(store, graph, e) for e in ingested),
                   key=lambda s: (s.span if s.span is not None else -1,
                                  s.examples)),
      schemas=_unique(walk.artifacts_of_type(graph, 'Schema') + schemas),
      statistics=statistics,
      anomalies=anomalies,
      graph=graph,
      transform=transform,
      destination_exists=_folder_exists(destination),
      performance=queries.performance_since_push(store, pushed.id),
      drift=queries.drift_since_push(store, version),
      serving=queries.serving_since_push(store, pushed.id),
      releases=releases.history(store, pipeline_config.MODEL_NAME),
  )


def _folder_exists(destination: Optional[str]) -> Optional[bool]:
  """Whether a pushed version's folder is still there (None: cannot tell from
  here, for a remote URI such as gs://)."""
  if not destination or '://' in destination:
    return None
  return os.path.isdir(destination)


def trained_models(store: queries.Store,
                   down: LineageGraph) -> list[TrainedModel]:
  """Models in a downstream graph, with the versions pushed of each."""
  result = []
  for model in walk.artifacts_of_type(down, 'Model'):
    producers = [down.executions[e.execution] for e in down.edges
                 if e.kind == 'output' and e.artifact == model.id]
    trainer = next((p for p in producers if not p.cached),
                   producers[0] if producers else None)
    result.append(TrainedModel(
        model=model.id,
        trainer_execution=trainer.id if trainer else None,
        run=trainer.run if trainer else None,
        pushed_versions=queries.pushed_versions_of_model(store, model.id),
    ))
  return result


def artifact_report(store: queries.Store, artifact_id: int,
                    max_hops: int = walk.DEFAULT_MAX_HOPS) -> ArtifactReport:
  """An artifact with what it came from, what used it, and models built on it."""
  artifact = queries.get_artifact(store, artifact_id)
  up = walk.upstream(store, artifact_id, max_hops)
  down = walk.downstream(store, artifact_id, max_hops)
  artifact.producer_node = up.artifacts[artifact_id].producer_node
  return ArtifactReport(artifact=artifact, upstream=up, downstream=down,
                        trained_models=trained_models(store, down))
