"""`make demo` as a user runs it, shortened to one arriving span: the first model is
served as stable, the new span's model goes out as canary while the client sends
traffic, is promoted, and the client saw no failed request."""
import json
import subprocess
import sys

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from metadata import connection, releases
from tests.conftest import PROJECT_ROOT


def test_demo_releases_the_new_span_model_without_a_failed_request(tmp_path):
    root = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "demo", "--output-dir", str(root), "--arrivals", "1",
         "--days-between", "2", "--canary-min-requests", "20"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    tally = json.loads((root / "client_tally.json").read_text())
    assert tally["failed"] == {}
    assert tally["ok"].get("stable", 0) > 0 and tally["ok"].get("canary", 0) > 0

    versions = sorted(int(p.name) for p in (root / "outputs" / "serving_model" / "taxi_tips")
                      .iterdir() if p.name.isdigit())
    assert len(versions) == 2  # the first model and the new span's
    config = text_format.Parse(
        (root / "outputs" / "serving_config" / "models.config").read_text(),
        model_server_config_pb2.ModelServerConfig())
    [model] = config.model_config_list.config
    assert model.version_labels["stable"] == versions[-1]

    store = connection.open_reader(connection.sqlite_config(root / "outputs" / "metadata.sqlite"))
    history = releases.history(store, "taxi_tips")
    newest = [(r.action, r.version) for r in history if r.version == str(versions[-1])]
    assert ("canary", str(versions[-1])) in newest
    assert ("promote", str(versions[-1])) in newest
