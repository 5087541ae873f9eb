"""Bad input fails with one clear line and exit 1; the store is never written."""
import hashlib

import pytest


def assert_clean_failure(result, *words):
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith("lineage: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr


def test_missing_store(run_cli, tmp_path):
    missing = tmp_path / "nowhere" / "metadata.sqlite"
    assert_clean_failure(run_cli("--metadata_path", missing, "runs"),
                         "no metadata store", "run_local.py")
    assert not missing.exists()


def test_file_that_is_not_a_store(run_cli, tmp_path):
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    assert_clean_failure(run_cli("model", "--metadata_path", empty),
                         "not a readable ML Metadata store")
    assert empty.stat().st_size == 0, "read-only: no tables were created"


def test_store_without_runs(run_cli, tmp_path):
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(tmp_path / "new.sqlite")
    config.sqlite.connection_mode = (
        metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE)
    metadata_store.MetadataStore(config)  # what a pipeline does before its first run
    for args in (["runs"], ["model"], ["diff", "previous", "latest"]):
        assert_clean_failure(run_cli("--metadata_path", tmp_path / "new.sqlite", *args),
                             "no pipeline runs yet")


def test_connection_config_textproto(run_cli, store, tmp_path):
    config = tmp_path / "mlmd.textproto"
    # Asks for read-write; the tool must still open it read-only.
    config.write_text(f'sqlite {{ filename_uri: "{store.metadata_path}" '
                      'connection_mode: READWRITE_OPENCREATE }\n')
    result = run_cli("--connection_config", config, "runs")
    assert result.returncode == 0, result.stderr
    assert "COMPLETE" in result.stdout
    config.write_text("sqlite { no_such_field: 1 }")
    assert_clean_failure(run_cli("--connection_config", config, "runs"),
                         "cannot read connection config")


@pytest.mark.parametrize("args, words", [
    (["model", "--version", "12345"], ["no pushed model version 12345", "pushed versions:"]),
    (["artifact", "987654"], ["no artifact with id 987654"]),
    (["artifact", "--span", "999"], ["no Examples artifact for span 999"]),
    (["diff", "latest", "no-such-run"], ["no pipeline run 'no-such-run'"]),
    (["graph", "--run", "424242"], ["no pipeline run '424242'"]),
    (["graph", "--artifact", "987654"], ["no artifact with id 987654"]),
])
def test_unknown_ids_and_versions(run_cli, store, args, words):
    assert_clean_failure(run_cli("--metadata_path", store.metadata_path, *args), *words)


def test_bad_flags_exit_non_zero_with_usage(run_cli, store):
    result = run_cli("--metadata_path", store.metadata_path, "graph", "--format", "png")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_every_command_leaves_the_store_untouched(store, lineage, tmp_path):
    def fingerprint():
        stat = store.metadata_path.stat()
        return (hashlib.sha256(store.metadata_path.read_bytes()).hexdigest(),
                stat.st_mtime_ns, stat.st_size)

    before = fingerprint()
    for args in (["runs"], ["model"], ["artifact", "--span", "16"],
                 ["diff", "previous", "latest"],
                 ["graph", "--format", "html", "-o", tmp_path / "page.html"]):
        lineage(*args)
    assert fingerprint() == before
    assert not any(p.name.endswith(("-journal", "-wal"))
                   for p in store.metadata_path.parent.iterdir())
