"""Opens an ML Metadata store for reading only.

SQLite stores are opened in MLMD's READONLY connection mode, so the tool can
never create, migrate or modify the store a pipeline writes.
"""

from __future__ import annotations

import os
from typing import Optional

from google.protobuf import text_format
from ml_metadata import errors as mlmd_errors
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipeline import config as pipeline_config
from pipeline.lineage.errors import LineageError


def default_metadata_path() -> str:
  """Where `pipeline/run_local.py` writes by default (TAXI_OUTPUT_DIR moves it)."""
  return str(pipeline_config.PipelineConfig().metadata_path)


def connection_config(
    metadata_path: Optional[str] = None,
    connection_config_path: Optional[str] = None,
) -> metadata_store_pb2.ConnectionConfig:
  """Builds a read-only ConnectionConfig from a SQLite path or a textproto."""
  if connection_config_path:
    try:
      with open(connection_config_path) as f:
        config = text_format.Parse(f.read(),
                                   metadata_store_pb2.ConnectionConfig())
    except (OSError, text_format.ParseError) as e:
      raise LineageError(
          f'cannot read connection config {connection_config_path}: {e}'
      ) from e
  else:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path or default_metadata_path()
  if config.HasField('sqlite'):
    path = config.sqlite.filename_uri
    if not os.path.isfile(path):
      raise LineageError(
          f'no metadata store at {path}: run `python pipeline/run_local.py` '
          'first, or pass --metadata_path / --connection_config')
    config.sqlite.connection_mode = (
        metadata_store_pb2.SqliteMetadataSourceConfig.READONLY)
  # Servers (MySQL, PostgreSQL) have no read-only mode in the config; at least
  # never create a database there. The tool itself only calls get_* methods.
  elif config.HasField('mysql'):
    config.mysql.skip_db_creation = True
  elif config.HasField('postgresql'):
    config.postgresql.skip_db_creation = True
  return config


def open_store(
    metadata_path: Optional[str] = None,
    connection_config_path: Optional[str] = None,
) -> metadata_store.MetadataStore:
  """Connects to the store and checks it holds ML Metadata tables."""
  config = connection_config(metadata_path, connection_config_path)
  try:
    store = metadata_store.MetadataStore(config)
    store.get_context_types()  # fails fast on a file that is not an MLMD store
  # MLMD raises RuntimeError from its C++ layer when a read-only SQLite file
  # has no tables yet (it tries to create them), StatusError for the rest.
  except (mlmd_errors.StatusError, RuntimeError) as e:
    where = (config.sqlite.filename_uri if config.HasField('sqlite')
             else connection_config_path)
    reason = str(e).splitlines()[0][:200]
    raise LineageError(
        f'{where} is not a readable ML Metadata store (empty, or not written '
        f'by a pipeline yet?): {reason}') from e
  return store
