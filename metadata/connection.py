"""Which ML Metadata store, and how to open it.

SQLite under the output folder by default; a `ConnectionConfig` textproto
(MySQL, PostgreSQL, SQLite) for shared stores. Readers open SQLite READONLY so
they can never create, migrate or change the store the pipeline writes.
"""
import os
import pathlib

from google.protobuf import text_format
from ml_metadata import errors as mlmd_errors
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

ConnectionConfig = metadata_store_pb2.ConnectionConfig


class StoreError(RuntimeError):
    """The store is missing, unreadable or not an ML Metadata store."""


def sqlite_config(path: os.PathLike | str) -> ConnectionConfig:
    config = ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return config


def config_from_textproto(path: os.PathLike | str) -> ConnectionConfig:
    try:
        return text_format.Parse(pathlib.Path(path).read_text(), ConnectionConfig())
    except (OSError, text_format.ParseError) as error:
        raise StoreError(f"cannot read connection config {path}: {error}") from error


def describe(config: ConnectionConfig) -> str:
    """Where the store is, for messages (never a password)."""
    if config.HasField("sqlite"):
        return config.sqlite.filename_uri
    if config.HasField("mysql"):
        return f"mysql://{config.mysql.user}@{config.mysql.host}:{config.mysql.port}/{config.mysql.database}"
    if config.HasField("postgresql"):
        pg = config.postgresql
        return f"postgresql://{pg.user}@{pg.host}:{pg.port}/{pg.dbname}"
    return "an ML Metadata store"


def read_only(config: ConnectionConfig) -> ConnectionConfig:
    """A copy that cannot create or change the store."""
    reader = ConnectionConfig()
    reader.CopyFrom(config)
    if reader.HasField("sqlite"):
        reader.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    # Servers have no read-only mode in the config; at least create no database.
    elif reader.HasField("mysql"):
        reader.mysql.skip_db_creation = True
    elif reader.HasField("postgresql"):
        reader.postgresql.skip_db_creation = True
    return reader


def exists(config: ConnectionConfig) -> bool:
    """False only for a SQLite file that was never written (servers: assume so)."""
    return not config.HasField("sqlite") or os.path.isfile(config.sqlite.filename_uri)


def open_store(config: ConnectionConfig) -> metadata_store.MetadataStore:
    """Connects, and checks the store holds ML Metadata tables."""
    try:
        store = metadata_store.MetadataStore(config)
        store.get_context_types()  # fails fast on a file that is not an MLMD store
    # MLMD raises RuntimeError from C++ when a read-only SQLite file has no
    # tables yet (it tries to create them), StatusError for the rest.
    except (mlmd_errors.StatusError, RuntimeError) as error:
        reason = str(error).splitlines()[0][:200]
        raise StoreError(f"{describe(config)} is not a readable ML Metadata store "
                         f"(empty, or not written by a pipeline yet?): {reason}") from error
    return store


def open_reader(config: ConnectionConfig) -> metadata_store.MetadataStore:
    return open_store(read_only(config))
