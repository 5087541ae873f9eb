"""A MySQL store (Debian's MariaDB server): ML Metadata opens it with the password
from MYSQL_PWD, and the run lock is MySQL's GET_LOCK, across processes and
freed when its holder is killed with kill -9."""
import json
import os
import signal

from metadata import connection, runs
from tests.conftest import make_spans
from tests.metadata_server.conftest import (module_command, run, run_local,
                                            start_lock_holder)


def test_run_lock_on_mysql_refuses_a_second_run_and_dies_with_its_holder(
        mysql_server, tmp_path):
    store, env = mysql_server.url("taxi_lock"), mysql_server.environment()
    make_spans(tmp_path / "data", 15, 15, rows=20)
    holder = start_lock_holder(store, env)  # it creates the database and ML Metadata's tables
    try:
        refused = run(run_local(tmp_path / "data", tmp_path / "out", store), env)
        assert refused.returncode == 3, refused.stdout + refused.stderr
        assert not (tmp_path / "out" / "pipeline_root").exists()
    finally:
        holder.kill()
        holder.wait()
    assert holder.returncode == -signal.SIGKILL
    after = start_lock_holder(store, env)  # would raise had the lock stayed taken
    after.kill()
    after.wait()


def test_lineage_reads_mysql_with_the_password_from_mysql_pwd(mysql_server, monkeypatch):
    store = mysql_server.url("taxi_lineage")
    monkeypatch.setenv("MYSQL_PWD", mysql_server.password)
    runs.register_run(connection.open_store(connection.parse(store)), "2026-01-01T00:00:00",
                      **{runs.TRIGGER: "manual", runs.SPAN: 15})
    monkeypatch.delenv("MYSQL_PWD")
    listed = run(module_command("pipeline.lineage", "runs", "--format", "json",
                                "--metadata", store), mysql_server.environment())
    assert listed.returncode == 0, listed.stderr
    assert [r["name"] for r in json.loads(listed.stdout)["runs"]] == ["2026-01-01T00:00:00"]
    no_password = {k: v for k, v in os.environ.items() if k != "MYSQL_PWD"}
    refused = run(module_command("pipeline.lineage", "runs", "--metadata", store), no_password)
    assert refused.returncode == 1, refused.stdout
