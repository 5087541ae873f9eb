"""JSON for programs: every record as an object tagged with its "kind".

`loads` rebuilds the same records from that text, so JSON written by one
version of the tool can be read back and compared by programs and tests.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any

from pipeline.lineage import records

# Kind tag <-> record class, for the records a command prints at top level.
KINDS = {
    'runs': records.RunRecord,
    'model_trace': records.ModelTrace,
    'artifact_report': records.ArtifactReport,
    'run_diff': records.RunDiff,
    'lineage_graph': records.LineageGraph,
}


def dumps(value: Any) -> str:
  """A record, or a list of RunRecords, as indented JSON with a "kind"."""
  if isinstance(value, list):
    return json.dumps({'kind': 'runs',
                       'runs': [dataclasses.asdict(v) for v in value]},
                      indent=2, sort_keys=True)
  kind = next(k for k, cls in KINDS.items() if isinstance(value, cls))
  return json.dumps({'kind': kind, kind: dataclasses.asdict(value)},
                    indent=2, sort_keys=True)


def _build(hint: Any, data: Any) -> Any:
  """Turns decoded JSON back into the value the type hint describes."""
  if data is None:
    return None
  origin = typing.get_origin(hint)
  if origin in (typing.Union, types.UnionType):
    options = [a for a in typing.get_args(hint) if a is not type(None)]
    return _build(options[0], data) if len(options) == 1 else data
  if origin is list:
    (item,) = typing.get_args(hint)
    return [_build(item, x) for x in data]
  if origin is dict:
    key_type, value_type = typing.get_args(hint)
    # JSON object keys are strings; artifact/execution maps are keyed by id.
    return {(int(k) if key_type is int else k): _build(value_type, v)
            for k, v in data.items()}
  if dataclasses.is_dataclass(hint):
    hints = typing.get_type_hints(hint)
    return hint(**{f.name: _build(hints[f.name], data[f.name])
                   for f in dataclasses.fields(hint) if f.name in data})
  return data


def loads(text: str) -> Any:
  """The records `dumps` wrote: a list of RunRecords or one record."""
  data = json.loads(text)
  kind = data['kind']
  if kind == 'runs':
    return [_build(records.RunRecord, r) for r in data['runs']]
  return _build(KINDS[kind], data[kind])
