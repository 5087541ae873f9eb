"""Opens an ML Metadata store for reading only, through the project's one
metadata layer (metadata/connection.py).

SQLite stores are opened in MLMD's READONLY connection mode, so the tool can
never create, migrate or modify the store a pipeline writes; server stores
with skip_db_creation, so a mistyped database name is not created.
"""

from __future__ import annotations

import os
from typing import Optional

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from metadata import connection
from pipeline import config as pipeline_config
from pipeline.lineage.errors import LineageError


def default_metadata_path() -> str:
  """Where `pipeline/run_local.py` writes by default (TAXI_OUTPUT_DIR moves it)."""
  return str(pipeline_config.PipelineConfig().metadata_path)


def connection_config(
    metadata_path: Optional[str] = None,
    connection_config_path: Optional[str] = None,
    metadata: Optional[str] = None,
) -> metadata_store_pb2.ConnectionConfig:
  """A read-only ConnectionConfig: from a SQLite path, a textproto, or a
  --metadata value (else $TAXI_METADATA, else the pipeline's SQLite file)."""
  try:
    if connection_config_path:
      config = connection.config_from_textproto(connection_config_path)
    elif metadata_path:
      config = connection.sqlite_config(metadata_path)
    else:
      config = connection.choose(metadata, default_metadata_path())
  except connection.StoreError as e:
    raise LineageError(str(e)) from e
  if config.HasField('sqlite') and not os.path.isfile(config.sqlite.filename_uri):
    raise LineageError(
        f'no metadata store at {config.sqlite.filename_uri}: run '
        '`python pipeline/run_local.py` first, or pass --metadata')
  return connection.read_only(config)


def open_store(
    metadata_path: Optional[str] = None,
    connection_config_path: Optional[str] = None,
    metadata: Optional[str] = None,
) -> metadata_store.MetadataStore:
  """Connects to the store and checks it holds ML Metadata tables."""
  config = connection_config(metadata_path, connection_config_path, metadata)
  try:
    return connection.open_store(config)
  except connection.StoreError as e:
    raise LineageError(str(e)) from e
