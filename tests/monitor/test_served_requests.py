"""The whole monitoring loop as a user runs it: the pushed taxi model served by
`python -m serving` with TF Serving's logging_config, trips sent over REST as a
client sends them, and `python -m pipeline.monitor` reading what the server
logged while it still runs. Held-out trips show no skew; trips with a payment
type the model never saw and fares ten times too high are named, and only they.
"""
import time

import pytest
import requests

from models import features as model_features
from tests.monitor import request_logs
from tests.monitor.test_monitor import monitor
from tests.serving.conftest import start_server, wait_for, write_model_config

MODEL = "taxi_tips"
SENT_PER_REQUEST = 5


def _logging_config(prefix) -> str:
    return ('    logging_config {\n'
            '      sampling_config { sampling_rate: 1.0 }\n'
            f'      log_collector_config {{ type: "tfrecord" filename_prefix: "{prefix}" }}\n'
            '    }\n')


def _send(server, trips) -> int:
    """Trips as a REST client sends them: complete ones as predicts on
    serving_raw (one value per raw feature), the rest as classify requests of
    tf.Examples. Returns the number of requests; each must succeed."""
    complete = [t for t in trips if request_logs.has_raw_features(t)]
    partial = [t for t in trips if not request_logs.has_raw_features(t)]
    sent = 0
    for i in range(0, len(complete), SENT_PER_REQUEST):
        instances = [{name: trip[name] for name in model_features.RAW_FEATURES}
                     for trip in complete[i:i + SENT_PER_REQUEST]]
        reply = requests.post(f"{server.rest_url}/v1/models/{MODEL}:predict", timeout=30,
                              json={"signature_name": "serving_raw", "instances": instances})
        assert reply.status_code == 200, reply.text
        sent += 1
    for i in range(0, len(partial), SENT_PER_REQUEST):
        examples = [{name: value for name, value in trip.items()
                     if name != model_features.TIPS_KEY}
                    for trip in partial[i:i + SENT_PER_REQUEST]]
        reply = requests.post(f"{server.rest_url}/v1/models/{MODEL}:classify", timeout=30,
                              json={"signature_name": "serving_default", "examples": examples})
        assert reply.status_code == 200, reply.text
        sent += 1
    return sent


def _logged(logs_dir) -> int:
    import tensorflow as tf
    return sum(1 for path in sorted(logs_dir.glob("*.tfrecord"))
               for _ in tf.data.TFRecordDataset(str(path)))


@pytest.fixture(scope="module")
def logging_server(store_copy, tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    logs_dir = folder / "request_logs"
    config = write_model_config(folder / "models.config", {MODEL: {
        "base_path": str(store_copy / "serving_model" / MODEL),
        "extra": _logging_config(logs_dir / MODEL)}})
    server = start_server(f"--model_config_file={config}", tmp_dir=folder)
    yield server, logs_dir
    server.stop()


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    return request_logs.held_out_trips(tmp_path_factory.mktemp("held_out_e2e"))


def _next_second() -> int:
    """Waits for the next whole second. Log times are whole seconds and a check
    ends before the second it starts in (a request of that second may still be
    on its way to the file: the next check reads it), so requests sent before
    this are all inside a check that starts after it."""
    second = int(time.time()) + 1
    while time.time() < second:
        time.sleep(0.05)
    return second


def _wait_until_logged(logs_dir, count):
    # The server writes whole records and flushes at least once a second.
    wait_for(lambda: _logged(logs_dir) >= count, timeout=30,
             message=f"{count} logged requests in {logs_dir}")


def test_served_requests_are_judged_against_the_served_models_training_data(
        logging_server, store_copy, held_out, pipeline_runs):
    server, logs_dir = logging_server
    served = str(pipeline_runs.pushed_versions()[-1])

    since = int(time.time())
    clean = _send(server, held_out)
    _wait_until_logged(logs_dir, clean)
    until = _next_second()

    # A day's window, so that the few seconds of requests are one window even
    # across an hour's turn (a smaller sample measures larger distances).
    status, report, stderr = monitor(store_copy, logs_dir, "--window", "1d",
                                     "--since", since_iso(since), "--until", since_iso(until))
    assert status == 0, stderr
    assert report["records_read"] == clean and report["skipped"] == []
    assert {w["model_version"] for w in report["windows"]} == {served}
    assert sum(w["examples"] for w in report["windows"]) == len(held_out)
    for window in report["windows"]:
        assert window["judged"] and not window["alarm"], window

    changed = _send(server, request_logs.changed(held_out))
    _wait_until_logged(logs_dir, clean + changed)
    _next_second()

    # No --since: the check starts where the last one of these logs stopped.
    status, report, stderr = monitor(store_copy, logs_dir, "--window", "1d")
    assert status == 1, (stderr, report)
    assert report["records_read"] == changed
    skewed = {f for w in report["windows"] for f in w["skewed_features"]}
    assert skewed == {"fare", "payment_type"}
    measured = {f["feature"] for w in report["windows"] for f in w["features"]
                if f["distance"] is not None}
    assert set(model_features.RAW_FEATURES) <= measured


def since_iso(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))
