"""Version management: polling the base path, policies, labels, config reloads, swaps.

A swap under concurrent load must not fail a single request: the old version serves until
the new one is loaded (TF Serving's availability-preserving policy).
"""
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from tests.serving.conftest import (add_version, make_model_base, start_server, wait_for,
                                    write_model_config)

PREDICT_ONE = {"instances": [1.0]}


def versions_and_states(server, model):
    status, body, _, _ = server.get(f"/v1/models/{model}")
    if status != 200:
        return None
    return [(v["version"], v["state"]) for v in body["model_version_status"]]


def version_status(server, version, model="half_plus_two"):
    status, body, _, _ = server.get(f"/v1/models/{model}/versions/{version}")
    return body["model_version_status"][0] if status == 200 else None


def predict_one(server, path="/v1/models/half_plus_two:predict"):
    status, body, _, _ = server.post(path, PREDICT_ONE)
    return status, body


@pytest.fixture(scope="module")
def latest_server(saved_models, module_tmp):
    base = make_model_base(module_tmp / "latest" / "half_plus_two",
                           {1: saved_models["half_plus_two"]})
    # Clutter the base path the way real pushes do; none of it is a version.
    os.makedirs(os.path.join(base, "tmp-push-3"))
    os.makedirs(os.path.join(base, "007x"))
    Path(base, "README").write_text("not a version")
    # Retries a tenth of a second apart: a broken version fails in half a second, not in
    # TF Serving's default 5 retries a minute apart.
    server = start_server("--model_name=half_plus_two", f"--model_base_path={base}",
                          "--file_system_poll_wait_seconds=1",
                          "--load_retry_interval_micros=100000", tmp_dir=module_tmp)
    server.base = base
    yield server
    server.stop()


def test_non_integer_directories_are_ignored(latest_server):
    assert versions_and_states(latest_server, "half_plus_two") == [("1", "AVAILABLE")]


def test_swap_under_load_fails_no_request(latest_server, saved_models):
    results, stop = [], threading.Event()

    def hammer():
        while not stop.is_set():
            results.append(predict_one(latest_server))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        add_version(latest_server.base, 2, saved_models["half_plus_three"])
        wait_for(lambda: predict_one(latest_server)[1] == {"predictions": [3.5]},
                 message="version 2 to serve")
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    bodies = [body for _, body in results]
    assert all(status == 200 for status, _ in results), \
        [r for r in results if r[0] != 200][:3]
    assert {"predictions": [2.5]} in bodies and {"predictions": [3.5]} in bodies
    assert set(map(str, bodies)) == {str({"predictions": [2.5]}), str({"predictions": [3.5]})}
    # Once 3.5 appeared, the old version never answered again.
    first_new = bodies.index({"predictions": [3.5]})
    assert {"predictions": [2.5]} not in bodies[first_new + 4 * 2:]
    wait_for(lambda: versions_and_states(latest_server, "half_plus_two") ==
             [("2", "AVAILABLE"), ("1", "END")], message="version 1 to unload")
    assert predict_one(latest_server, "/v1/models/half_plus_two/versions/1:predict") == (
        404, {"error": "Servable not found for request: Specific(half_plus_two, 1)"})


def test_broken_version_keeps_the_old_one_serving(latest_server):
    serving_before = predict_one(latest_server)
    assert serving_before[0] == 200
    broken = Path(latest_server.base) / ".staging-5"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    os.rename(broken, Path(latest_server.base) / "5")
    wait_for(lambda: (version_status(latest_server, 5) or {}).get("state") == "END",
             message="version 5 to fail")
    failed = version_status(latest_server, 5)
    assert failed["version"] == "5"
    assert failed["status"]["error_code"] != "OK"
    assert failed["status"]["error_message"]
    assert predict_one(latest_server) == serving_before
    shutil.rmtree(Path(latest_server.base) / "5")


def test_removed_version_directory_is_unloaded(latest_server, saved_models):
    add_version(latest_server.base, 6, saved_models["half_plus_two"])
    wait_for(lambda: predict_one(latest_server)[1] == {"predictions": [2.5]},
             message="version 6 to serve")
    shutil.rmtree(Path(latest_server.base) / "6")
    # Version 2 is on disk again as the latest; it comes back and 6 goes away.
    wait_for(lambda: predict_one(latest_server)[1] == {"predictions": [3.5]},
             message="version 2 to serve again")
    wait_for(lambda: ("6", "END") in versions_and_states(latest_server, "half_plus_two"),
             message="version 6 to end")


@pytest.fixture(scope="module")
def labelled_server(saved_models, module_tmp):
    root = module_tmp / "labelled"
    base = make_model_base(root / "half_plus_two", {1: saved_models["half_plus_two"],
                                                     2: saved_models["half_plus_three"]})
    config_path = root / "models.config"
    server_config = {"half_plus_two": {"base_path": base, "extra": (
        "    model_version_policy { all {} }\n"
        '    version_labels { key: "stable" value: 1 }\n'
        '    version_labels { key: "canary" value: 2 }\n')}}
    write_model_config(config_path, server_config)
    server = start_server(f"--model_config_file={config_path}",
                          "--model_config_file_poll_wait_seconds=1",
                          "--file_system_poll_wait_seconds=1", tmp_dir=module_tmp)
    server.config_path, server.base, server.root = config_path, base, root
    yield server
    server.stop()


def test_all_policy_serves_every_version(labelled_server):
    assert versions_and_states(labelled_server, "half_plus_two") == [
        ("2", "AVAILABLE"), ("1", "AVAILABLE")]
    assert predict_one(labelled_server) == (200, {"predictions": [3.5]})
    assert predict_one(labelled_server, "/v1/models/half_plus_two/versions/1:predict") == (
        200, {"predictions": [2.5]})


def test_labels_route_to_versions(labelled_server):
    assert predict_one(labelled_server, "/v1/models/half_plus_two/labels/stable:predict") == (
        200, {"predictions": [2.5]})
    assert predict_one(labelled_server, "/v1/models/half_plus_two/labels/canary:predict") == (
        200, {"predictions": [3.5]})
    status, body, _, _ = labelled_server.get("/v1/models/half_plus_two/labels/canary/metadata")
    assert (status, body["model_spec"]["version"]) == (200, "2")
    assert predict_one(labelled_server, "/v1/models/half_plus_two/labels/beta:predict") == (
        400, {"error": "Unrecognized servable version label: beta"})


def test_config_file_is_reread(labelled_server, saved_models):
    # Move "stable" to 2, switch to the specific policy and add a second model.
    write_model_config(labelled_server.config_path, {
        "half_plus_two": {"base_path": labelled_server.base, "extra": (
            "    model_version_policy { specific { versions: 2 } }\n"
            '    version_labels { key: "stable" value: 2 }\n')},
        "half_plus_three": make_model_base(labelled_server.root / "half_plus_three",
                                           {7: saved_models["half_plus_three"]}),
    })
    wait_for(lambda: predict_one(
        labelled_server, "/v1/models/half_plus_two/labels/stable:predict")[1] ==
        {"predictions": [3.5]}, message="stable to move to version 2")
    wait_for(lambda: versions_and_states(labelled_server, "half_plus_two") ==
             [("2", "AVAILABLE"), ("1", "END")], message="version 1 to unload")
    assert predict_one(labelled_server, "/v1/models/half_plus_two/labels/canary:predict") == (
        400, {"error": "Unrecognized servable version label: canary"})
    wait_for(lambda: predict_one(labelled_server, "/v1/models/half_plus_three:predict") ==
             (200, {"predictions": [3.5]}), message="the new model to serve")
    assert versions_and_states(labelled_server, "half_plus_three") == [("7", "AVAILABLE")]


def test_label_on_unavailable_version_refuses_to_start(saved_models, module_tmp):
    root = module_tmp / "bad_label"
    base = make_model_base(root / "m", {1: saved_models["half_plus_two"]})
    config_path = write_model_config(root / "models.config", {"m": {
        "base_path": base, "extra": '    version_labels { key: "stable" value: 9 }\n'}})
    server = start_server(f"--model_config_file={config_path}", tmp_dir=root,
                          expect_failure=True)
    assert server.process.returncode != 0
    assert ("Request to assign label to version 9 of model m, which is not currently "
            "available for inference") in server.log()
    assert "Exporting HTTP/REST API" not in server.log()
