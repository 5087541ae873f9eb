"""Turns ML Metadata protos into the plain records of records.py.

Pure functions with no store access: decoding of property values (TFX keeps
JSON in strings and structs) lives here and nowhere else.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from google.protobuf import json_format
from ml_metadata.proto import metadata_store_pb2

from pipeline.lineage.records import ArtifactRecord, ExecutionRecord

_Execution = metadata_store_pb2.Execution
_Artifact = metadata_store_pb2.Artifact


def _maybe_json(text: str) -> Any:
  # TFX serialises protos and dicts (train_args, custom_config, ...) to JSON.
  if text[:1] in ('{', '['):
    try:
      return json.loads(text)
    except ValueError:
      pass
  return text


def decode_value(value: metadata_store_pb2.Value) -> Any:
  kind = value.WhichOneof('value')
  if kind == 'string_value':
    return _maybe_json(value.string_value)
  if kind == 'struct_value':
    data = json_format.MessageToDict(value.struct_value)
    # TFX wraps JSON-encoded values as {"__value__": "<json>"}.
    if set(data) == {'__value__'} and isinstance(data['__value__'], str):
      return _maybe_json(data['__value__'])
    return data
  if kind == 'proto_value':
    return json_format.MessageToDict(value.proto_value)
  if kind is None:
    return None
  return getattr(value, kind)


def properties(message) -> dict[str, Any]:
  merged = {k: decode_value(v) for k, v in message.properties.items()}
  merged.update(
      {k: decode_value(v) for k, v in message.custom_properties.items()})
  return dict(sorted(merged.items()))


def artifact_record(artifact: _Artifact,
                    producer_node: Optional[str] = None) -> ArtifactRecord:
  return ArtifactRecord(
      id=artifact.id,
      type=artifact.type,
      uri=artifact.uri,
      state=_Artifact.State.Name(artifact.state),
      created=artifact.create_time_since_epoch / 1000.0,
      properties=properties(artifact),
      producer_node=producer_node,
  )


def node_and_run(contexts: list[metadata_store_pb2.Context]
                 ) -> tuple[Optional[str], Optional[str]]:
  """The pipeline node id and run name an execution is associated with."""
  pipelines = [c.name for c in contexts if c.type == 'pipeline']
  node = run = None
  for context in contexts:
    if context.type == 'node':
      node = context.name
      for pipeline in pipelines:
        if node.startswith(pipeline + '.'):
          node = node[len(pipeline) + 1:]
    elif context.type == 'pipeline_run':
      run = context.name
  return node, run


def execution_record(execution: _Execution, node: Optional[str],
                     run: Optional[str]) -> ExecutionRecord:
  started = execution.create_time_since_epoch / 1000.0
  ended = execution.last_update_time_since_epoch / 1000.0
  return ExecutionRecord(
      id=execution.id,
      # Without a node context, the short class name is the best id we have.
      node=node or execution.type.rsplit('.', 1)[-1],
      type=execution.type,
      state=_Execution.State.Name(execution.last_known_state),
      started=started,
      duration_s=round(max(ended - started, 0.0), 3),
      run=run,
      properties=properties(execution),
  )


def is_input(event: metadata_store_pb2.Event) -> bool:
  # Resolver nodes only write INTERNAL_* events: they select artifacts, they do
  # not consume or produce them, so they are not part of data lineage.
  return event.type in (metadata_store_pb2.Event.INPUT,
                        metadata_store_pb2.Event.DECLARED_INPUT)


def is_output(event: metadata_store_pb2.Event) -> bool:
  return event.type in (metadata_store_pb2.Event.OUTPUT,
                        metadata_store_pb2.Event.DECLARED_OUTPUT)


def event_keys(event: metadata_store_pb2.Event) -> list[str]:
  """The input/output names of an event. Usually one; TFX records an artifact
  given to two inputs of one execution (a model that is also its own
  baseline) as one event whose path holds both names."""
  keys = [step.key for step in event.path.steps if step.HasField('key')]
  return keys or ['']


def artifact_label(artifact: ArtifactRecord) -> str:
  """A short human name: type, id and the property that tells it apart."""
  props = artifact.properties
  parts = [f'{artifact.type} #{artifact.id}']
  if props.get('span') is not None and artifact.type == 'Examples':
    parts.append(f'span {props["span"]}')
  if props.get('version') is not None and artifact.type == 'Examples':
    parts.append(f'version {props["version"]}')
  if artifact.type == 'ModelBlessing' and 'blessed' in props:
    parts.append('blessed' if props['blessed'] else 'NOT blessed')
  if artifact.type == 'InfraBlessing' and 'blessed' in props:
    parts.append('infra blessed' if props['blessed'] else 'NOT infra blessed')
    if props.get('latency_p99_ms') is not None:
      parts.append(f'p99 {props["latency_p99_ms"]:.1f} ms')
  if artifact.type == 'PushedModel':
    parts.append(f'version {props["pushed_version"]}' if props.get('pushed')
                 else 'not pushed')
  return ', '.join(parts)
