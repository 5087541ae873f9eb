"""A model keeps its last versions unless a config drops it, as with TF Serving's
servable_versions_always_present: a reload (gRPC or the polled config file) whose base path
holds no wanted version is refused with TF Serving's message, and a base path found empty
by a poll unloads nothing.
"""
import shutil
from pathlib import Path

import grpc
import pytest
from google.protobuf import text_format
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2

from tests.serving.conftest import (add_version, make_model_base, start_server, wait_for,
                                    write_model_config)

PREDICT = "/v1/models/{}:predict"


def entry(name, base_path, extra=""):
    return (f'config {{ name: "{name}" base_path: "{base_path}" model_platform: "tensorflow" '
            f'{extra} }}')


def reload(server, *entries):
    """HandleReloadConfigRequest; (grpc code, details), OK when it succeeded."""
    config = text_format.Parse("model_config_list { %s }" % " ".join(entries),
                               model_server_config_pb2.ModelServerConfig())
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        try:
            stub.HandleReloadConfigRequest(
                model_management_pb2.ReloadConfigRequest(config=config), timeout=120)
        except grpc.RpcError as error:
            return error.code(), error.details()
    return grpc.StatusCode.OK, ""


def predict(server, model, x=1.0):
    return server.post(PREDICT.format(model), {"instances": [x]})[:2]


def states(server, model):
    status, body, _, _ = server.get(f"/v1/models/{model}")
    return [(v["version"], v["state"]) for v in body["model_version_status"]]


@pytest.fixture(scope="module")
def server(saved_models, module_tmp):
    """half_plus_two (v1, serving y = 0.5x + 2) and emptied (v1), polled every second."""
    root = module_tmp / "grpc"
    config = write_model_config(root / "models.config", {
        "half_plus_two": make_model_base(root / "half_plus_two",
                                         {1: saved_models["half_plus_two"]}),
        "emptied": make_model_base(root / "emptied", {1: saved_models["half_plus_two"]}),
    })
    server = start_server(f"--model_config_file={config}", "--file_system_poll_wait_seconds=1",
                          tmp_dir=root)
    server.root = root
    yield server
    server.stop()


def test_reload_to_a_base_path_without_versions_is_refused(server):
    empty = server.root / "empty_base"
    empty.mkdir()
    (empty / "tmp-push-1").mkdir()  # not a version
    emptied = entry("emptied", server.root / "emptied")
    assert reload(server, entry("half_plus_two", empty), emptied) == (
        grpc.StatusCode.NOT_FOUND,
        f"Unable to find a numerical version path for servable half_plus_two at: {empty}")
    assert reload(server, entry("half_plus_two", server.root / "missing"), emptied) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        f"Could not find base path {server.root / 'missing'} for servable half_plus_two")
    # A policy that wants a version the folder does not hold is refused the same way.
    base = server.root / "half_plus_two"
    assert reload(server, entry("half_plus_two", base,
                                "model_version_policy { specific { versions: 9 } }"),
                  emptied)[0] == grpc.StatusCode.NOT_FOUND
    # Nothing changed: version 1 still serves.
    assert predict(server, "half_plus_two") == (200, {"predictions": [2.5]})
    assert states(server, "half_plus_two") == [("1", "AVAILABLE")]


def test_reload_to_a_base_path_with_versions_swaps(server, saved_models):
    moved = make_model_base(server.root / "moved", {5: saved_models["half_plus_three"]})
    assert reload(server, entry("half_plus_two", moved),
                  entry("emptied", server.root / "emptied")) == (grpc.StatusCode.OK, "")
    assert predict(server, "half_plus_two") == (200, {"predictions": [3.5]})
    assert states(server, "half_plus_two") == [("5", "AVAILABLE"), ("1", "END")]


def test_a_base_path_emptied_on_disk_keeps_its_version(server, saved_models):
    base = Path(server.root / "emptied")
    shutil.rmtree(base / "1")
    wait_for(lambda: "No versions of servable emptied found under base path" in server.log(),
             message="a poll to find the folder empty")
    assert "Keeping the versions it serves." in server.log()
    assert predict(server, "emptied") == (200, {"predictions": [2.5]})
    assert states(server, "emptied") == [("1", "AVAILABLE")]
    # The next version to land replaces it as usual.
    add_version(base, 2, saved_models["half_plus_three"])
    wait_for(lambda: predict(server, "emptied") == (200, {"predictions": [3.5]}),
             message="version 2 to serve")
    wait_for(lambda: states(server, "emptied") == [("2", "AVAILABLE"), ("1", "END")],
             message="version 1 to unload")


def test_polled_config_file_waits_for_the_new_base_path_to_hold_a_version(
        saved_models, module_tmp):
    root = module_tmp / "config_file"
    config = root / "models.config"
    write_model_config(config, {"half_plus_two": make_model_base(
        root / "old", {1: saved_models["half_plus_two"]})})
    server = start_server(f"--model_config_file={config}",
                          "--model_config_file_poll_wait_seconds=1",
                          "--file_system_poll_wait_seconds=1", tmp_dir=root)
    try:
        new_base = root / "new"
        new_base.mkdir()
        write_model_config(config, {"half_plus_two": str(new_base)})
        wait_for(lambda: "Unable to find a numerical version path for servable half_plus_two "
                         f"at: {new_base}" in server.log(), message="the reload to be refused")
        assert predict(server, "half_plus_two") == (200, {"predictions": [2.5]})
        assert states(server, "half_plus_two") == [("1", "AVAILABLE")]
        # The config applies on a later poll, once the pusher wrote a version there.
        add_version(new_base, 3, saved_models["half_plus_three"])
        wait_for(lambda: predict(server, "half_plus_two") == (200, {"predictions": [3.5]}),
                 message="the new base path's version to serve")
        assert states(server, "half_plus_two") == [("3", "AVAILABLE"), ("1", "END")]
    finally:
        server.stop()
