"""The Pusher on an object store: a real GCS emulator on loopback, no mocks.

gcp-storage-emulator serves Cloud Storage's JSON API from this process; the
Pusher runs in a subprocess, as the pipeline runs it, with tensorflow-io's gs://
file system pointed at the emulator. The tests read the bucket as a polling
model server would: over HTTP, while the push is going on.
"""
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

import pytest
from gcp_storage_emulator import server as gcs_emulator

from pipeline import run_local
from tests.conftest import PROJECT_ROOT, PYTHON

BUCKET = "models"
BASE = f"gs://{BUCKET}/serving/taxi_tips"
PREFIX = "serving/taxi_tips/"
PUSH_TIMEOUT_SECONDS = 120


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Emulator:
    """The emulator's HTTP API, read as a model server polling the bucket reads it."""

    def __init__(self, port: int):
        self.endpoint = f"http://127.0.0.1:{port}"

    def objects(self) -> dict[str, dict]:
        """Object name -> its metadata (generation, size), under PREFIX."""
        query = urllib.parse.urlencode({"prefix": PREFIX})
        with urllib.request.urlopen(f"{self.endpoint}/storage/v1/b/{BUCKET}/o?{query}",
                                    timeout=30) as answer:
            return {item["name"]: item for item in json.load(answer).get("items", [])}

    def read(self, name: str) -> bytes:
        quoted = urllib.parse.quote(name, safe="")
        with urllib.request.urlopen(
                f"{self.endpoint}/download/storage/v1/b/{BUCKET}/o/{quoted}?alt=media",
                timeout=30) as answer:
            return answer.read()


def emulator_environment(endpoint: str) -> dict:
    """What a process needs for tf.io.gfile's gs:// to reach the emulator.
    TensorFlow's built-in gs:// knows only Google's endpoint; tensorflow-io's
    plugin (TF_USE_MODULAR_FILESYSTEM, read when TensorFlow is imported) takes
    CLOUD_STORAGE_EMULATOR_ENDPOINT. tensorflow-io-gcs-filesystem 0.37.1 crashes
    when its GCS_* cache variables are unset (it parses getenv's NULL), and its
    XML-API uploads of empty folder markers fail on this emulator: JSON API only."""
    return {**os.environ, "TF_USE_LEGACY_KERAS": "1", "PYTHONPATH": str(PROJECT_ROOT),
            "TF_USE_MODULAR_FILESYSTEM": "1", "CLOUD_STORAGE_EMULATOR_ENDPOINT": endpoint,
            "GOOGLE_CLOUD_CPP_STORAGE_REST_CONFIG": "disable-xml",
            "GCS_READ_CACHE_BLOCK_SIZE_MB": "16", "GCS_READ_CACHE_MAX_SIZE_MB": "0",
            "GCS_READ_CACHE_MAX_STALENESS": "0", "GCS_STAT_CACHE_MAX_AGE": "0",
            "GCS_STAT_CACHE_MAX_ENTRIES": "1024"}


@pytest.fixture(scope="module")
def emulator():
    port = free_port()
    server = gcs_emulator.create_server("127.0.0.1", port, in_memory=True,
                                        default_bucket=BUCKET)
    server.start()
    yield server, Emulator(port)
    server.stop()


@pytest.fixture(scope="module")
def model_artifact(tmp_path_factory):
    """A Model artifact's folder as the Trainer leaves it (Format-Serving/), with
    assets and a warmup file as the InfraValidator's warmed copy has them."""
    from tests.serving.saved_models import build_half_plus_two
    model_dir = tmp_path_factory.mktemp("model")
    saved_model = model_dir / "Format-Serving"
    build_half_plus_two(str(saved_model))
    (saved_model / "assets").mkdir(exist_ok=True)
    (saved_model / "assets" / "vocabulary.txt").write_text("cash\ncard\n")
    (saved_model / "assets.extra").mkdir()
    (saved_model / "assets.extra" / "tf_serving_warmup_requests").write_bytes(os.urandom(4096))
    return model_dir


def start_push(endpoint: str, model_dir, pushed_model_dir) -> subprocess.Popen:
    """The Pusher's executor in its own process, as the pipeline runs it."""
    return subprocess.Popen(
        [PYTHON, "-m", "tests.pipeline.test_remote_push", str(model_dir), BASE,
         str(pushed_model_dir)],
        cwd=PROJECT_ROOT, env=emulator_environment(endpoint),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def files_under(root) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes()
            for path in root.rglob("*") if path.is_file()}


def version_files(objects: dict, version) -> set[str]:
    """The files of a version (folder markers, names ending in '/', left out)."""
    start = f"{PREFIX}{version}/"
    return {name[len(start):] for name in objects
            if name.startswith(start) and not name.endswith("/")}


def push_interrupted_before_saved_model(server, bucket: Emulator, model_dir, tmp_path) -> str:
    """kill -9 the Pusher while it uploads saved_model.pb: the emulator holds that
    one upload until the process is dead, then drops it."""
    storage = server._storage  # the emulator's object store; no public hook
    create_file = storage.create_file
    reached, process_killed = threading.Event(), threading.Event()

    def hold_saved_model(bucket_name, name, *args, **kwargs):
        if name.endswith("/saved_model.pb"):
            reached.set()
            process_killed.wait(PUSH_TIMEOUT_SECONDS)
            raise ConnectionAbortedError("the pushing process was killed")
        return create_file(bucket_name, name, *args, **kwargs)

    storage.create_file = hold_saved_model
    try:
        push = start_push(bucket.endpoint, model_dir, tmp_path / "interrupted_push")
        assert reached.wait(PUSH_TIMEOUT_SECONDS), push.communicate()[1][-3000:]
        push.send_signal(signal.SIGKILL)
        assert push.wait(30) == -signal.SIGKILL
    finally:
        process_killed.set()
        storage.create_file = create_file
    versions = {name[len(PREFIX):].split("/")[0] for name in bucket.objects()} - {""}
    assert len(versions) == 1
    return versions.pop()


def test_push_to_gcs_after_an_interrupted_push(emulator, model_artifact, tmp_path):
    server, bucket = emulator
    expected = files_under(model_artifact / "Format-Serving")
    interrupted = push_interrupted_before_saved_model(server, bucket, model_artifact, tmp_path)
    # Everything but saved_model.pb arrived: no server may load this version.
    assert version_files(bucket.objects(), interrupted) == set(expected) - {"saved_model.pb"}

    # The next push, read by a polling thread the way a model server lists the
    # bucket: whenever saved_model.pb is there, every other file must be too.
    snapshots, pushing = [], threading.Event()

    def poll():
        while pushing.is_set():
            snapshots.append(bucket.objects())
            time.sleep(0.02)  # leaves the emulator's thread time for the push

    pushing.set()
    poller = threading.Thread(target=poll)
    poller.start()
    push = start_push(bucket.endpoint, model_artifact, tmp_path / "pushed_model")
    try:
        stdout, stderr = push.communicate(timeout=PUSH_TIMEOUT_SECONDS)
    finally:
        pushing.clear()
        poller.join()
    assert push.returncode == 0, stderr[-3000:]
    pushed = json.loads(stdout.strip().splitlines()[-1])
    version = pushed["pushed_version"]

    # A new version: the interrupted one is not reused, and stays as it was.
    assert int(version) > int(interrupted)
    assert pushed["pushed_destination"] == f"{BASE}/{version}"
    objects = bucket.objects()
    assert version_files(objects, interrupted) == set(expected) - {"saved_model.pb"}
    # Byte-identical files.
    assert version_files(objects, version) == set(expected)
    for name, content in expected.items():
        assert bucket.read(f"{PREFIX}{version}/{name}") == content, name
    # saved_model.pb was written last (generations are creation times in ns).
    generations = {name: int(objects[f"{PREFIX}{version}/{name}"]["generation"])
                   for name in expected}
    assert max(g for name, g in generations.items() if name != "saved_model.pb") \
        < generations["saved_model.pb"]
    seen = [version_files(snapshot, version) for snapshot in snapshots]
    for files in seen:
        if "saved_model.pb" in files:
            assert files == set(expected)
    # The PushedModel artifact keeps its archive copy, as TFX's Pusher's does.
    assert files_under(tmp_path / "pushed_model" / "archive") == expected


def test_local_push_still_renames_a_whole_version_into_place(model_artifact, tmp_path):
    from pipeline.components import atomic_pusher
    base = tmp_path / "serving_model" / "taxi_tips"
    saved_model = model_artifact / "Format-Serving"
    first = atomic_pusher.publish(str(saved_model), str(base))
    second = atomic_pusher.publish(str(saved_model), str(base))
    assert int(second) > int(first)
    assert sorted(p.name for p in base.iterdir()) == [first, second]  # no staging left
    assert files_under(base / second) == files_under(saved_model)


@pytest.mark.parametrize("destination", ["/srv/models", "gs://", "s3://models/taxi_tips"])
def test_push_destination_flag_refuses_what_cannot_work(destination):
    """A local folder belongs under --output-dir; s3:// needs tensorflow-io."""
    if destination.startswith("s3") and importlib.util.find_spec("tensorflow_io"):
        pytest.skip("tensorflow-io is installed here: s3:// is a file system")
    with pytest.raises(SystemExit) as exit_status:
        run_local.parse_args(["--push-destination", destination])
    assert exit_status.value.code == 2  # argparse's usage error


def test_push_destination_flag_sets_the_pushers_base_directory():
    cfg, _ = run_local.parse_args(["--push-destination", f"{BASE}/"])
    assert cfg.push_base_directory == BASE


def _push_in_this_process(model_dir: str, base_directory: str, pushed_model_dir: str):
    """Runs the Pusher's executor on a blessed Model artifact; prints the
    PushedModel's properties as JSON."""
    from tfx.proto import pusher_pb2
    from tfx.types import standard_artifacts, standard_component_specs as specs
    from tfx.utils import proto_utils

    from pipeline.components.atomic_pusher import AtomicPusherExecutor

    model = standard_artifacts.Model()
    model.uri = model_dir
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = pushed_model_dir + "/blessing"
    blessing.set_int_custom_property("blessed", 1)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = pushed_model_dir + "/archive"
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=base_directory))
    AtomicPusherExecutor().Do(
        {specs.MODEL_KEY: [model], specs.MODEL_BLESSING_KEY: [blessing]},
        {specs.PUSHED_MODEL_KEY: [pushed]},
        {specs.PUSH_DESTINATION_KEY: proto_utils.proto_to_json(destination)})
    print(json.dumps({key: pushed.get_string_custom_property(key)
                      for key in ("pushed_version", "pushed_destination")}))


if __name__ == "__main__":
    _push_in_this_process(*sys.argv[1:4])
