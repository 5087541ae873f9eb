"""Which ML Metadata store, and how to open it.

Every command takes the store as one value (`--metadata`, else the environment
variable TAXI_METADATA, else SQLite under the output folder): a SQLite file,
`postgresql://user@host:port/dbname`, `mysql://user@host:port/dbname`, or a
`ConnectionConfig` textproto file. Passwords never come from that value, only
from the server's own environment variables (PGPASSWORD or a passfile for
PostgreSQL, MYSQL_PWD for MySQL), which ML Metadata's client libraries read
themselves when the config has no password; so they stay out of shell history,
process lists, ML Metadata and the pipeline IR. Readers open SQLite READONLY so
they can never create, migrate or change the store the pipeline writes.
"""
import os
import pathlib
import urllib.parse

from google.protobuf import text_format
from ml_metadata import errors as mlmd_errors
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

ConnectionConfig = metadata_store_pb2.ConnectionConfig

ENVIRONMENT_VARIABLE = "TAXI_METADATA"
POSTGRESQL_SCHEMES = ("postgresql", "postgres")
MYSQL_SCHEME = "mysql"
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}
# Where each server's own clients look for the password.
PASSWORD_SOURCES = {"postgresql": "PGPASSWORD (or a passfile: ~/.pgpass, or PGPASSFILE)",
                    "mysql": "MYSQL_PWD"}
TEXTPROTO_SUFFIXES = (".pbtxt", ".textproto", ".txtpb", ".prototxt")
SQLITE_HEADER = b"SQLite format 3\x00"
# Query parameters of a PostgreSQL URL, as libpq names them.
POSTGRESQL_SSL_OPTIONS = ("sslmode", "sslcert", "sslkey", "sslrootcert")


class StoreError(RuntimeError):
    """The store is missing, unreadable or not an ML Metadata store."""


def sqlite_config(path: os.PathLike | str) -> ConnectionConfig:
    config = ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return config


def config_from_textproto(path: os.PathLike | str) -> ConnectionConfig:
    try:
        config = text_format.Parse(pathlib.Path(path).read_text(), ConnectionConfig())
    except (OSError, text_format.ParseError) as error:
        raise StoreError(f"cannot read connection config {path}: {error}") from error
    if _has_password(config):
        kind = config.WhichOneof("config")
        raise StoreError(f"{path} holds a password: remove it and set "
                         f"{PASSWORD_SOURCES[kind]} in the environment instead")
    return config


def choose(value: str | os.PathLike | None, default_sqlite: os.PathLike | str) -> ConnectionConfig:
    """The store a command uses: its --metadata value, else $TAXI_METADATA,
    else the SQLite file `default_sqlite`."""
    value = value or os.environ.get(ENVIRONMENT_VARIABLE) or None
    return parse(value) if value else sqlite_config(default_sqlite)


def parse(value: str | os.PathLike) -> ConnectionConfig:
    """A --metadata / TAXI_METADATA value as a ConnectionConfig."""
    text = str(value)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in POSTGRESQL_SCHEMES or scheme == MYSQL_SCHEME:
        return _server_config(text)
    if scheme == "sqlite":
        return sqlite_config(text.split("://", 1)[1])
    if scheme:
        raise StoreError(f"unknown metadata store {text!r}: use a SQLite file path, "
                         "postgresql://user@host:port/dbname, mysql://user@host:port/dbname "
                         "or a ConnectionConfig textproto file")
    path = pathlib.Path(text)
    if path.suffix in TEXTPROTO_SUFFIXES or _is_text_file(path):
        return config_from_textproto(path)
    return sqlite_config(path)


def _is_text_file(path: pathlib.Path) -> bool:
    """An existing non-empty file that is not a SQLite database: a textproto."""
    try:
        with open(path, "rb") as file:
            head = file.read(len(SQLITE_HEADER))
    except OSError:
        return False
    return bool(head) and head != SQLITE_HEADER


def _server_config(url: str) -> ConnectionConfig:
    parts = urllib.parse.urlsplit(url)
    kind = "mysql" if parts.scheme.lower() == MYSQL_SCHEME else "postgresql"
    shown = f"{parts.scheme}://{parts.hostname or ''}..."  # never echo a password
    if parts.password is not None:
        raise StoreError(f"{shown}: the metadata URL holds a password, and command lines "
                         f"are seen by every user of the machine. Remove it from the URL "
                         f"and set {PASSWORD_SOURCES[kind]} in the environment instead")
    try:
        port = parts.port or DEFAULT_PORTS[kind]
    except ValueError as error:
        raise StoreError(f"{shown}: {error}") from None
    database = urllib.parse.unquote(parts.path.lstrip("/"))
    user = urllib.parse.unquote(parts.username or "")
    if not database or not user:
        raise StoreError(f"{shown}: name the user and the database, as in "
                         f"{kind}://user@host:{DEFAULT_PORTS[kind]}/dbname")
    options = dict(urllib.parse.parse_qsl(parts.query))
    # As in libpq's URLs, the host may be a percent-encoded unix socket folder
    # (postgresql://user@%2Fvar%2Frun%2Fpostgresql/db) or come as ?host=.
    # Not parts.hostname: it lowercases the folder.
    netloc_host = parts.netloc.rpartition("@")[2]
    netloc_host = netloc_host.rsplit(":", 1)[0] if parts.port else netloc_host
    host = options.pop("host", None) or urllib.parse.unquote(netloc_host) or "localhost"
    config = ConnectionConfig()
    if kind == "postgresql":
        pg = config.postgresql
        pg.host, pg.port, pg.user, pg.dbname = host, str(port), user, database
        for name in POSTGRESQL_SSL_OPTIONS:
            if name in options:
                setattr(pg.ssloption, name, options.pop(name))
        if "passfile" in options:
            pg.passfile = options.pop("passfile")
    else:
        my = config.mysql
        my.host, my.port, my.user, my.database = host, port, user, database
        if "socket" in options:
            my.socket = options.pop("socket")
    if options:
        raise StoreError(f"{shown}: unknown URL parameter(s) {', '.join(sorted(options))}")
    return config


def _has_password(config: ConnectionConfig) -> bool:
    return bool(config.mysql.password or config.postgresql.password
                or config.postgresql.ssloption.sslpassword)


def without_password(config: ConnectionConfig) -> ConnectionConfig:
    """A copy to persist (exec properties, IR, files): the password is re-read
    from the environment by whoever connects."""
    copy = ConnectionConfig()
    copy.CopyFrom(config)
    if copy.HasField("mysql"):
        copy.mysql.ClearField("password")
    if copy.HasField("postgresql"):
        copy.postgresql.ClearField("password")
        copy.postgresql.ssloption.ClearField("sslpassword")
    return copy


def to_text(config: ConnectionConfig) -> str:
    """The config as a textproto to persist, without a password."""
    return text_format.MessageToString(without_password(config))


def from_text(text: str) -> ConnectionConfig:
    return text_format.Parse(text, ConnectionConfig())


def is_server(config: ConnectionConfig) -> bool:
    return config.HasField("postgresql") or config.HasField("mysql")


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
    # tables yet (it tries to create them) or a server refuses the connection,
    # StatusError for the rest.
    except (mlmd_errors.StatusError, RuntimeError) as error:
        reason = str(error).splitlines()[0][:200]
        if is_server(config):
            kind = config.WhichOneof("config")
            raise StoreError(f"cannot use the ML Metadata store {describe(config)}: {reason} "
                             f"(is the server up, the database created, and the password "
                             f"in {PASSWORD_SOURCES[kind]}?)") from error
        raise StoreError(f"{describe(config)} is not a readable ML Metadata store "
                         f"(empty, or not written by a pipeline yet?): {reason}") from error
    return store


def open_reader(config: ConnectionConfig) -> metadata_store.MetadataStore:
    return open_store(read_only(config))
