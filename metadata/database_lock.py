"""A named lock held by a session of the metadata store's database server: a
PostgreSQL session-level advisory lock, or MySQL's GET_LOCK.

The server drops a session's locks when its connection closes, so a holder
killed by kill -9 (or a machine that vanished, once TCP keepalive gives up on
it) leaves nothing stuck, as an flock would on one machine. A holder says who
it is where the others can read it: on PostgreSQL in its session's last query
(pg_stat_activity.query) and application_name.
"""
import base64
import contextlib
import hashlib
import json
import os
import time

from metadata import connection

HOLDER_TAG = "taxi-lock-holder:"
POLL_SECONDS = 1.0  # how often a waiter tries again
CONNECT_TIMEOUT_SECONDS = 10
# A holder on a machine that died without closing its socket: the server
# closes the session after about idle + interval * count seconds.
KEEPALIVE = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
             "keepalives_count": 3}


class Busy(RuntimeError):
    def __init__(self, holder: dict):
        self.holder = holder
        super().__init__(f"held by {holder}")


def hold(config, name: str, holder: dict, wait: bool = False, on_wait=None):
    """Holds lock `name` in the store's database while the `with` block runs.
    Raises Busy, or with `wait` calls on_wait(holder) once and waits."""
    kinds = {"postgresql": _PostgreSQLLock, "mysql": _MySQLLock}
    kind = config.WhichOneof("config")
    if kind not in kinds:
        raise ValueError(f"{kind} stores have no database lock")
    try:
        lock = kinds[kind](getattr(config, kind), name, holder)
    except Exception as error:  # the driver's: refused, authentication, no database
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else repr(error)
        raise connection.StoreError(
            f"cannot take the lock {name} in {connection.describe(config)}: {reason} "
            f"(password from {connection.PASSWORD_SOURCES[kind]})") from error
    return _held(lock, wait, on_wait)


@contextlib.contextmanager
def _held(lock, wait: bool, on_wait):
    try:
        if not lock.try_acquire():
            if not wait:
                raise Busy(lock.holder())
            if on_wait:
                on_wait(lock.holder())
            while not lock.try_acquire():
                time.sleep(POLL_SECONDS)
        lock.announce()
        yield
    finally:
        lock.close()  # closing the session releases the lock


def _encode(holder: dict) -> str:
    return HOLDER_TAG + base64.urlsafe_b64encode(json.dumps(holder).encode()).decode()


def _decode(query: str | None) -> dict:
    """The holder a session announced in its last query, or {}."""
    if not query or HOLDER_TAG not in query:
        return {}
    encoded = query.split(HOLDER_TAG, 1)[1].split("'", 1)[0]
    try:
        return json.loads(base64.urlsafe_b64decode(encoded))
    except ValueError:
        return {}


class _PostgreSQLLock:
    def __init__(self, pg, name: str, holder: dict):
        import psycopg  # only stores on PostgreSQL need it

        self.holder_record = holder
        # pg_try_advisory_lock(bigint): pg_locks shows it as classid (high 32
        # bits), objid (low 32 bits), objsubid 1.
        self.key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big",
                                  signed=True)
        parameters = {
            "host": pg.host or None, "hostaddr": pg.hostaddr or None,
            "port": pg.port or None, "user": pg.user or None, "dbname": pg.dbname,
            # Empty: libpq reads PGPASSWORD or the passfile, as ML Metadata's does.
            "password": pg.password or None, "passfile": pg.passfile or None,
            "application_name": f"{name} {holder.get('purpose', '')} "
                                f"pid {holder.get('pid')}"[:63],
            "connect_timeout": CONNECT_TIMEOUT_SECONDS, **KEEPALIVE}
        for option in ("sslmode", "sslcert", "sslkey", "sslrootcert"):
            parameters[option] = getattr(pg.ssloption, option) or None
        self.session = psycopg.connect(autocommit=True, **parameters)

    def try_acquire(self) -> bool:
        return self.session.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()[0]

    def announce(self):
        # The value is in the query text itself (not a bound parameter), so it
        # stays readable in pg_stat_activity.query while the session idles.
        from psycopg import sql
        self.session.execute(sql.SQL("SELECT {} AS lock_holder").format(
            sql.Literal(_encode(self.holder_record))))

    def holder(self) -> dict:
        row = self.session.execute(
            """SELECT a.query, a.pid, host(a.client_addr), extract(epoch FROM a.backend_start)
               FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
               WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                 AND l.classid::bigint = %s AND l.objid::bigint = %s
                 AND l.database = (SELECT oid FROM pg_database
                                   WHERE datname = current_database())""",
            ((self.key >> 32) & 0xFFFFFFFF, self.key & 0xFFFFFFFF)).fetchone()
        if row is None:
            return {}
        query, server_pid, client, since = row
        # A role that may not read the holder's query still sees its session.
        return _decode(query) or {"pid": f"{server_pid} (a PostgreSQL session)",
                                  "host": client or "the database server's machine",
                                  "since": float(since or 0)}

    def close(self):
        self.session.close()


class _MySQLLock:
    # GET_LOCK names are server-wide and at most 64 characters.
    MAX_NAME = 64

    def __init__(self, my, name: str, holder: dict):
        import pymysql  # only stores on MySQL need it

        self.holder_record = holder
        name = f"{my.database}/{name}"
        self.name = (name if len(name) <= self.MAX_NAME
                     else hashlib.sha256(name.encode()).hexdigest()[:self.MAX_NAME])
        self.session = pymysql.connect(
            host=my.host or "localhost", port=int(my.port or 3306), user=my.user,
            # MySQL clients read the password from MYSQL_PWD; PyMySQL needs it given.
            password=my.password or os.environ.get("MYSQL_PWD", ""),
            database=my.database, unix_socket=my.socket or None,
            connect_timeout=CONNECT_TIMEOUT_SECONDS, autocommit=True)

    def _query(self, statement: str, *arguments):
        with self.session.cursor() as cursor:
            cursor.execute(statement, arguments)
            return cursor.fetchone()

    def try_acquire(self) -> bool:
        return self._query("SELECT GET_LOCK(%s, 0)", self.name)[0] == 1

    def announce(self):
        pass  # an idle MySQL session shows no query: the holder is told by its host

    def holder(self) -> dict:
        (session_id,) = self._query("SELECT IS_USED_LOCK(%s)", self.name)
        if session_id is None:
            return {}
        row = self._query("SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = %s",
                          session_id)
        return {"pid": f"{session_id} (a MySQL connection)",
                "host": row[0] if row else "the database server's machine"}

    def close(self):
        self.session.close()
