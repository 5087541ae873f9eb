"""Reads the few artifact payloads lineage answers need, from their URIs.

Evaluation metrics, validation anomalies and the raw data files behind a span.
Deliberately avoids importing TensorFlow or TFMA (seconds of start-up each):
TFRecords are read with a tiny reader and the protos loaded on their own.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import struct
from typing import Optional

from pipeline.lineage.records import DataFile


def _tfrecords(path: str):
  """Yields the payloads of an uncompressed TFRecord file (CRCs not checked)."""
  with open(path, 'rb') as f:
    data = f.read()
  pos = 0
  while pos + 12 <= len(data):
    (length,) = struct.unpack('<Q', data[pos:pos + 8])
    yield data[pos + 12:pos + 12 + length]
    pos += 12 + length + 4  # header (length + crc), payload, payload crc


_metrics_module = None


def _metrics_for_slice_class():
  # The generated module only needs protobuf's wrappers; importing it through
  # the tensorflow_model_analysis package would pull in TensorFlow and Beam.
  global _metrics_module
  if _metrics_module is None:
    spec = importlib.util.find_spec('tensorflow_model_analysis')
    if spec is None or not spec.submodule_search_locations:
      return None
    path = os.path.join(list(spec.submodule_search_locations)[0], 'proto',
                        'metrics_for_slice_pb2.py')
    module_spec = importlib.util.spec_from_file_location(
        '_lineage_metrics_for_slice_pb2', path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    _metrics_module = module
  return _metrics_module.MetricsForSlice


def overall_metrics(evaluation_uri: str) -> dict[str, dict[str, float]]:
  """Metrics of the overall slice of a ModelEvaluation, keyed by model role.

  Returns {"candidate": {...}, "baseline": {...}}; diff metrics are skipped.
  """
  result: dict[str, dict[str, float]] = {}
  files = sorted(glob.glob(os.path.join(evaluation_uri, 'metrics*')))
  metrics_class = _metrics_for_slice_class() if files else None
  if metrics_class is None:
    return result
  for path in files:
    for record in _tfrecords(path):
      metrics = metrics_class.FromString(record)
      if metrics.slice_key.single_slice_keys:
        continue  # only the overall slice
      for entry in metrics.metric_keys_and_values:
        if entry.key.is_diff or not entry.value.HasField('double_value'):
          continue
        role = entry.key.model_name or 'candidate'
        result.setdefault(role, {})[entry.key.name] = (
            entry.value.double_value.value)
  return result


def anomalies_by_split(anomalies_uri: str) -> dict[str, list[str]]:
  """Anomalies found by ExampleValidator, as "feature: description" lines."""
  from tensorflow_metadata.proto.v0 import anomalies_pb2  # pylint: disable=g-import-not-at-top

  result: dict[str, list[str]] = {}
  for split_dir in sorted(glob.glob(os.path.join(anomalies_uri, 'Split-*'))):
    split = os.path.basename(split_dir)[len('Split-'):]
    lines = []
    for name in ('SchemaDiff.pb', 'anomalies.pbtxt'):
      path = os.path.join(split_dir, name)
      if not os.path.isfile(path):
        continue
      anomalies = anomalies_pb2.Anomalies()
      with open(path, 'rb') as f:
        anomalies.ParseFromString(f.read())
      for feature, info in sorted(anomalies.anomaly_info.items()):
        lines.append(f'{feature}: {info.short_description or info.description}')
      if anomalies.HasField('dataset_anomaly_info'):
        info = anomalies.dataset_anomaly_info
        lines.append(f'(dataset): {info.short_description or info.description}')
    result[split] = lines
  return result


def data_files(input_base: str, pattern: str) -> list[DataFile]:
  """The files an ExampleGen split pattern matches today, with size and mtime."""
  files = []
  for path in sorted(glob.glob(os.path.join(input_base, pattern))):
    stat = os.stat(path)
    files.append(DataFile(path=path, size=stat.st_size, mtime=int(stat.st_mtime)))
  return files


def fingerprint(split_name: str, files: list[DataFile]) -> str:
  """TFX's input fingerprint (tfx.utils.io_utils.generate_fingerprint) format.

  Computed again from the files so users see whether the data on disk still
  matches what the pipeline ingested.
  """
  xor_checksum = 0
  for f in files:
    xor_checksum ^= f.mtime
  return (f'split:{split_name},num_files:{len(files)},'
          f'total_bytes:{sum(f.size for f in files)},'
          f'xor_checksum:{xor_checksum},'
          f'sum_checksum:{sum(f.mtime for f in files)}')


def blessing_marker(blessing_uri: str) -> Optional[bool]:
  """Reads the BLESSED / NOT_BLESSED marker file a ModelBlessing carries."""
  if os.path.exists(os.path.join(blessing_uri, 'BLESSED')):
    return True
  if os.path.exists(os.path.join(blessing_uri, 'NOT_BLESSED')):
    return False
  return None
