"""Lineage graphs: upstream, downstream and whole-run views as LineageGraph.

Asks MLMD for a hop-limited subgraph (get_lineage_subgraph) in one query, then
walks it locally to keep only real data flow: resolver bookkeeping events and
"compared with" inputs such as an Evaluator's baseline model are left out.
"""

from __future__ import annotations

import collections
from typing import Iterable, Optional

from ml_metadata.proto import metadata_store_pb2

from pipeline.lineage import convert, queries
from pipeline.lineage.records import (ArtifactRecord, Edge, LineageGraph,
                                      RunRecord)

# Inputs that feed an execution without being what its outputs are made from:
# the Evaluator compares against a baseline model, and Transform's analyzer
# cache only saves re-analysing spans it also reads as 'examples'. Following
# them would credit a model with older runs' data.
NOT_MADE_FROM = frozenset({'baseline_model', 'analyzer_cache'})
# TFX gives each step inside a Cond its predicate's channel as an input, keyed
# '_<producer>.<output>' (e.g. '_RetrainDecision.decision'): it decided whether
# the step ran, not what it is made from, and following it would credit a new
# model with the served model's spans through the span checks.
IMPLICIT_INPUT_PREFIX = '_'
# Enough for ExampleGen -> ... -> Pusher with room for side branches.
DEFAULT_MAX_HOPS = 40

_Options = metadata_store_pb2.LineageSubgraphQueryOptions


class _Subgraph:
  """Index over one LineageGraph proto: who produced and who consumed what."""

  def __init__(self, graph: metadata_store_pb2.LineageGraph):
    contexts = {c.id: c for c in graph.contexts}
    contexts_of = collections.defaultdict(list)
    for association in graph.associations:
      if association.context_id in contexts:
        contexts_of[association.execution_id].append(
            contexts[association.context_id])
    self.artifacts = {a.id: convert.artifact_record(a) for a in graph.artifacts}
    self.executions = {
        e.id: convert.execution_record(e, *convert.node_and_run(contexts_of[e.id]))
        for e in graph.executions}
    self.producers = collections.defaultdict(list)  # artifact -> [(key, exec)]
    self.consumers = collections.defaultdict(list)  # artifact -> [(key, exec)]
    self.inputs = collections.defaultdict(list)  # exec -> [(key, artifact)]
    self.outputs = collections.defaultdict(list)  # exec -> [(key, artifact)]
    for event in sorted(graph.events,
                        key=lambda e: (e.execution_id, e.artifact_id)):
      if (event.artifact_id not in self.artifacts or
          event.execution_id not in self.executions):
        continue
      for key in convert.event_keys(event):
        if convert.is_output(event):
          self.producers[event.artifact_id].append((key, event.execution_id))
          self.outputs[event.execution_id].append((key, event.artifact_id))
        elif convert.is_input(event):
          self.consumers[event.artifact_id].append((key, event.execution_id))
          self.inputs[event.execution_id].append((key, event.artifact_id))

  def cache_source(self, execution_id: int) -> Optional[int]:
    """For a cached execution, the execution that computed its outputs."""
    for _, artifact_id in self.outputs[execution_id]:
      for _, producer in self.producers[artifact_id]:
        if not self.executions[producer].cached:
          return producer
    return None

  def pick_producer(self, artifact_id: int,
                    run: Optional[str]) -> Optional[tuple[str, int]]:
    """One producer per artifact: the one in the consumer's run if any
    (so a run reads as it happened, cached steps included), else the one that
    really computed it."""
    candidates = self.producers.get(artifact_id, [])
    for key, execution_id in candidates:
      if run is not None and self.executions[execution_id].run == run:
        return key, execution_id
    for key, execution_id in candidates:
      if not self.executions[execution_id].cached:
        return key, execution_id
    return candidates[0] if candidates else None


def _made_from(key: str, skip_inputs: frozenset[str]) -> bool:
  return key not in skip_inputs and not key.startswith(IMPLICIT_INPUT_PREFIX)


def _subgraph(store: queries.Store, artifact_ids: Iterable[int],
              direction: int, max_hops: int) -> _Subgraph:
  options = _Options(max_num_hops=max_hops, direction=direction)
  ids = ', '.join(str(i) for i in artifact_ids)
  options.starting_artifacts.filter_query = f'id IN ({ids})'
  return _Subgraph(store.get_lineage_subgraph(options))


class _Builder:
  """Accumulates the walked part of a subgraph into a LineageGraph record."""

  def __init__(self, index: _Subgraph, roots: list[str]):
    self.index = index
    self.graph = LineageGraph(roots=roots, artifacts={}, executions={},
                              edges=[])
    self._edges = set()

  def add_artifact(self, artifact_id: int):
    self.graph.artifacts.setdefault(artifact_id,
                                    self.index.artifacts[artifact_id])

  def add_execution(self, execution_id: int):
    if execution_id not in self.graph.executions:
      record = self.index.executions[execution_id]
      if record.cached:
        record.cache_source = self.index.cache_source(execution_id)
      self.graph.executions[execution_id] = record

  def add_edge(self, artifact_id: int, execution_id: int, kind: str, key: str):
    if (artifact_id, execution_id, kind, key) not in self._edges:
      self._edges.add((artifact_id, execution_id, kind, key))
      self.graph.edges.append(Edge(artifact_id, execution_id, kind, key))


def _set_producer_nodes(graph: LineageGraph):
  for edge in graph.edges:
    if edge.kind == 'output':
      artifact = graph.artifacts[edge.artifact]
      artifact.producer_node = artifact.producer_node or (
          graph.executions[edge.execution].node)


def upstream(store: queries.Store, artifact_id: int,
             max_hops: int = DEFAULT_MAX_HOPS,
             skip_inputs: frozenset[str] = NOT_MADE_FROM) -> LineageGraph:
  """Everything an artifact was made from, one producing execution per artifact."""
  index = _subgraph(store, [artifact_id], _Options.UPSTREAM, max_hops)
  builder = _Builder(index, [f'a{artifact_id}'])
  queue = collections.deque([(artifact_id, None)])
  seen = set()
  while queue:
    current, run = queue.popleft()
    if current in seen or current not in index.artifacts:
      continue
    seen.add(current)
    builder.add_artifact(current)
    picked = index.pick_producer(current, run)
    if picked is None:
      continue
    key, execution_id = picked
    builder.add_execution(execution_id)
    builder.add_edge(current, execution_id, 'output', key)
    for input_key, input_id in index.inputs[execution_id]:
      if not _made_from(input_key, skip_inputs):
        continue
      builder.add_artifact(input_id)
      builder.add_edge(input_id, execution_id, 'input', input_key)
      queue.append((input_id, index.executions[execution_id].run))
  _set_producer_nodes(builder.graph)
  return builder.graph


def downstream(store: queries.Store, artifact_id: int,
               max_hops: int = DEFAULT_MAX_HOPS,
               skip_inputs: frozenset[str] = NOT_MADE_FROM) -> LineageGraph:
  """Everything made from an artifact, in every run that used it."""
  index = _subgraph(store, [artifact_id], _Options.DOWNSTREAM, max_hops)
  builder = _Builder(index, [f'a{artifact_id}'])
  queue = collections.deque([artifact_id])
  seen = set()
  while queue:
    current = queue.popleft()
    if current in seen or current not in index.artifacts:
      continue
    seen.add(current)
    builder.add_artifact(current)
    for key, execution_id in index.consumers[current]:
      if not _made_from(key, skip_inputs):
        continue
      builder.add_execution(execution_id)
      builder.add_edge(current, execution_id, 'input', key)
      for output_key, output_id in index.outputs[execution_id]:
        builder.add_artifact(output_id)
        builder.add_edge(output_id, execution_id, 'output', output_key)
        queue.append(output_id)
  # Producers of artifacts reached here are known from the walk itself.
  _set_producer_nodes(builder.graph)
  return builder.graph


def run_graph(store: queries.Store, run: RunRecord) -> LineageGraph:
  """All executions of one pipeline run with the artifacts they read and wrote."""
  executions = queries.executions(
      store, [e.id for e in store.get_executions_by_context(run.id)])
  events = store.get_events_by_execution_ids(list(executions))
  edges = []
  for event in events:
    if convert.is_input(event) or convert.is_output(event):
      kind = 'input' if convert.is_input(event) else 'output'
      edges.extend(Edge(event.artifact_id, event.execution_id, kind, key)
                   for key in convert.event_keys(event))
  connected = {e.execution for e in edges}
  consumers = {e.execution for e in edges if e.kind == 'input'}
  graph = LineageGraph(
      # The steps that start the run's data flow (ExampleGen, importers).
      roots=[f'e{i}' for i in sorted(connected - consumers)],
      artifacts=queries.artifacts(store, {e.artifact for e in edges}),
      # Resolver executions only select artifacts: nothing to draw.
      executions={i: r for i, r in executions.items() if i in connected},
      edges=edges,
  )
  for execution in graph.executions.values():
    if execution.cached:
      execution.cache_source = queries.cache_source(store, execution.id)
  _set_producer_nodes(graph)
  return graph


def merge(*graphs: LineageGraph) -> LineageGraph:
  """One graph holding the nodes and edges of several, roots of the first."""
  merged = LineageGraph(roots=list(graphs[0].roots), artifacts={},
                        executions={}, edges=[])
  seen = set()
  for graph in graphs:
    merged.artifacts.update(graph.artifacts)
    for execution_id, record in graph.executions.items():
      merged.executions.setdefault(execution_id, record)
    for edge in graph.edges:
      key = (edge.artifact, edge.execution, edge.kind, edge.key)
      if key not in seen:
        seen.add(key)
        merged.edges.append(edge)
  return merged


def producer_of(graph: LineageGraph, artifact_id: int) -> Optional[int]:
  """The execution that made an artifact, as far as this graph knows."""
  return next((e.execution for e in graph.edges
               if e.kind == 'output' and e.artifact == artifact_id), None)


def inputs_of(graph: LineageGraph, execution_id: int) -> list[tuple[str, int]]:
  """(input name, artifact id) pairs an execution consumed in this graph."""
  return [(e.key, e.artifact) for e in graph.edges
          if e.kind == 'input' and e.execution == execution_id]


def artifacts_of_type(graph: LineageGraph,
                      type_name: str) -> list[ArtifactRecord]:
  return sorted((a for a in graph.artifacts.values() if a.type == type_name),
                key=lambda a: a.id)
