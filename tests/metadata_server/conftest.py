"""Fixtures: a real PostgreSQL (and MariaDB) server for the session, and one
pipeline run on PostgreSQL that first had to wait for the run lock.

`pipeline_on_postgresql` is a user's session with a shared store: another
process holds the run lock in the database; a run without --wait is refused;
a run with --wait waits; the holder is killed with kill -9, and the waiting run
goes on, trains and pushes. Every command gets its password from PGPASSWORD.
"""
import dataclasses
import pathlib
import subprocess
import time

import pytest

from tests.conftest import PROJECT_ROOT, PYTHON, TEST_RUN_FLAGS, make_spans
from tests.metadata_server import servers

SPAN = 15
# One span with a window of one: the run needs no backfill runs before it.
RUN_FLAGS = TEST_RUN_FLAGS + ["--training-window-spans", "1"]
WAIT_SECONDS = 240  # for a command to reach the lock


@pytest.fixture(scope="session")
def postgresql_server():
    server = servers.start_postgresql()
    if server is None:
        pytest.fail("PostgreSQL is not installed: `make test` installs Debian's postgresql")
    yield server
    servers.stop_postgresql(server)


@pytest.fixture(scope="session")
def mysql_server():
    server = servers.start_mysql()
    if server is None:
        pytest.fail("MariaDB is not installed: `make test` installs Debian's mariadb-server")
    yield server
    servers.stop_mysql(server)


def run_local(data_dir, output_dir, store: str | None, *extra_flags) -> list[str]:
    """The pipeline's command line; store None: from TAXI_METADATA."""
    return [PYTHON, str(PROJECT_ROOT / "pipeline" / "run_local.py"), "--data-dir", str(data_dir),
            "--output-dir", str(output_dir), *(["--metadata", store] if store else []),
            *RUN_FLAGS, *extra_flags]


def module_command(module: str, *args: str) -> list[str]:
    return [PYTHON, "-m", module, *args]


def run(command: list[str], env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=timeout)


def start_lock_holder(store: str, env: dict, lock: str = "run.lock") -> subprocess.Popen:
    """Another process, holding the run lock (or `lock`) until it is killed."""
    holder = subprocess.Popen(module_command("tests.metadata_server.hold_lock", store, lock),
                              env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    said = holder.stdout.readline().strip()
    if said != "held":
        holder.kill()
        raise AssertionError(f"the lock holder did not get the lock: {said!r}")
    return holder


def sessions_of(server, dbname: str, pid: int) -> int:
    """Database sessions a process opened (their application_name names its pid)."""
    with server.connect(dbname) as session:
        return session.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
            "AND application_name LIKE %s", (dbname, f"% pid {pid}")).fetchone()[0]


def open_reader(server, store: str):
    """ML Metadata read in this process; its libpq reads PGPASSWORD when connecting."""
    from metadata import connection
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PGPASSWORD", server.password)
        return connection.open_reader(connection.parse(store))


def pipeline_runs_recorded(server, store: str) -> int:
    from metadata import runs
    return len(open_reader(server, store).get_contexts_by_type(runs.PIPELINE_RUN))


@dataclasses.dataclass
class PostgreSQLPipeline:
    server: servers.PostgreSQLServer
    dbname: str
    data_dir: pathlib.Path
    output_dir: pathlib.Path
    refused: subprocess.CompletedProcess  # no --wait while the lock was held
    waiter_session_seen: bool  # the --wait run's lock session, while it waited
    runs_while_waiting: int  # pipeline runs recorded meanwhile
    holder_status: int  # the holder's exit status: killed by SIGKILL
    waited: subprocess.CompletedProcess  # the --wait run, after the holder died

    @property
    def url(self) -> str:
        return self.server.url(self.dbname)

    @property
    def serving_dir(self) -> pathlib.Path:
        return self.output_dir / "serving_model" / "taxi_tips"

    def pushed_versions(self) -> list[str]:
        return sorted(p.name for p in self.serving_dir.iterdir() if p.name.isdigit())


@pytest.fixture(scope="session")
def pipeline_on_postgresql(postgresql_server, tmp_path_factory) -> PostgreSQLPipeline:
    server, dbname = postgresql_server, "taxi_pipeline"
    root = tmp_path_factory.mktemp("postgresql_pipeline")
    data_dir, output_dir = root / "data", root / "outputs"
    make_spans(data_dir, SPAN, SPAN)
    store, env = server.url(dbname), server.environment()
    holder = start_lock_holder(store, env)  # its first connection creates the database
    try:
        refused = run(run_local(data_dir, output_dir, store), env)
        waiter = subprocess.Popen(run_local(data_dir, output_dir, store, "--wait"),
                                  env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        deadline = time.time() + WAIT_SECONDS
        seen = False
        while not seen and time.time() < deadline and waiter.poll() is None:
            seen = sessions_of(server, dbname, waiter.pid) > 0
            time.sleep(0.5)
        time.sleep(2)  # had it not waited, it would start recording its run now
        runs_while_waiting = pipeline_runs_recorded(server, store)
    finally:
        holder.kill()  # kill -9: the server drops its session and its lock
        holder.wait()
    stdout, stderr = waiter.communicate(timeout=1200)
    waited = subprocess.CompletedProcess(waiter.args, waiter.returncode, stdout, stderr)
    return PostgreSQLPipeline(server, dbname, data_dir, output_dir, refused, seen,
                              runs_while_waiting, holder.returncode, waited)
