"""Load retries as TF Serving's: --max_num_load_retries tries, --load_retry_interval_micros
apart, then the version stays failed until its files change (our addition: TF Serving
would need a restart).

Versions here are published non-atomically, file by file as `cp -r` or a sync does:
saved_model.pb first, the variables later.
"""
import shutil
import time
from pathlib import Path

import pytest

from tests.serving.conftest import make_model_base, start_server, wait_for

MODEL = "half_plus_two"
PREDICT = f"/v1/models/{MODEL}:predict"


def copy_saved_model_pb_only(source, version_dir):
    Path(version_dir).mkdir()
    shutil.copy(Path(source) / "saved_model.pb", Path(version_dir) / "saved_model.pb")


def copy_the_rest(source, version_dir):
    for item in Path(source).iterdir():
        target = Path(version_dir) / item.name
        if item.is_dir():
            shutil.copytree(item, target)
        elif not target.exists():
            shutil.copy(item, target)


def version_status(server, version):
    status, body, _, _ = server.get(f"/v1/models/{MODEL}/versions/{version}")
    return body["model_version_status"][0] if status == 200 else {}


def failures_logged(server, version):
    return server.log().count(f"Loading servable: {{name: {MODEL} version: {version}}} failed")


def start(saved_models, root, *flags):
    base = make_model_base(root / MODEL, {1: saved_models["half_plus_two"]})
    server = start_server(f"--model_name={MODEL}", f"--model_base_path={base}",
                          "--file_system_poll_wait_seconds=1", *flags, tmp_dir=root)
    server.base = Path(base)
    return server


@pytest.fixture
def one_retry_server(saved_models, tmp_path):
    server = start(saved_models, tmp_path, "--max_num_load_retries=1",
                   "--load_retry_interval_micros=200000")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def patient_server(saved_models, module_tmp):
    server = start(saved_models, module_tmp, "--max_num_load_retries=5",
                   "--load_retry_interval_micros=2000000")
    yield server
    server.stop()


def test_failed_version_is_loaded_again_once_its_files_change(one_retry_server, saved_models):
    server, source = one_retry_server, saved_models["half_plus_three"]
    copy_saved_model_pb_only(source, server.base / "2")
    wait_for(lambda: version_status(server, 2).get("state") == "END",
             message="the incomplete version 2 to fail")
    failed = version_status(server, 2)
    assert failed["status"]["error_code"] != "OK" and failed["status"]["error_message"]
    assert server.post(PREDICT, {"instances": [1.0]})[:2] == (200, {"predictions": [2.5]})
    # The first try and one retry; polls that find the same files do not try again.
    wait_for(lambda: server.log().count(f"{MODEL} version: 2}} exhausted max_num_retries: 1"),
             message="the retries to end")
    assert failures_logged(server, 2) == 2
    time.sleep(3)  # three more polls
    assert failures_logged(server, 2) == 2

    copy_the_rest(source, server.base / "2")
    wait_for(lambda: server.post(PREDICT, {"instances": [1.0]})[1] == {"predictions": [3.5]},
             message="the completed version 2 to serve")
    assert version_status(server, 2)["state"] == "AVAILABLE"
    assert (f"Files of servable version {{name: {MODEL} version: 2}} changed since its load "
            "failed; loading it again") in server.log()


def test_a_retry_picks_up_a_copy_that_completed_meanwhile(patient_server, saved_models):
    server, source = patient_server, saved_models["half_plus_three"]
    copy_saved_model_pb_only(source, server.base / "3")
    wait_for(lambda: failures_logged(server, 3) >= 1, message="the first load of 3 to fail")
    # Between retries the version is still loading, and the old one serves.
    assert version_status(server, 3)["state"] == "LOADING"
    assert server.post(PREDICT, {"instances": [1.0]})[:2] == (200, {"predictions": [2.5]})
    copy_the_rest(source, server.base / "3")
    wait_for(lambda: version_status(server, 3).get("state") == "AVAILABLE",
             message="a retry to load version 3")
    assert server.post(PREDICT, {"instances": [1.0]})[:2] == (200, {"predictions": [3.5]})
    assert f"Retrying of Loading servable: {{name: {MODEL} version: 3}} retry: 1" in server.log()
    assert f"{{name: {MODEL} version: 3}} changed since" not in server.log()


def test_retries_stop_when_the_version_is_removed(patient_server):
    broken = patient_server.base / "4"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    wait_for(lambda: failures_logged(patient_server, 4) >= 1, message="version 4 to fail")
    shutil.rmtree(broken)
    wait_for(lambda: f"Retrying of Loading servable: {{name: {MODEL} version: 4}} was "
                     "cancelled." in patient_server.log(), message="the retries to stop")
    assert failures_logged(patient_server, 4) <= 2
    assert patient_server.post(PREDICT, {"instances": [1.0]})[:2] == (
        200, {"predictions": [3.5]})
