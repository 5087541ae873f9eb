"""`release check` decides by itself from the server's real Prometheus page: a
canary that served enough requests within the bounds is promoted, one that
breaks them is rolled back; too few requests, and it waits."""
from metadata import connection, releases
from pipeline.release import actions, canary_health, policy
from tests.release.conftest import (MODEL, release_cli, send_requests, serve,
                                    wait_for_labels)
from tests.serving.conftest import add_version


def test_a_canary_within_bounds_is_promoted_and_one_that_breaks_them_rolled_back(
        setup, tmp_path):
    release = setup.release()
    actions.add_version(release, setup.old, "the version served so far")
    server = serve(setup, tmp_path)
    try:
        release.metrics_url = server.metrics_url
        actions.add_version(release, setup.new, "pushed")
        actions.label_pending(release, "pushed")
        wait_for_labels(server, stable=setup.old, canary=setup.new)

        def check(*bounds):
            result = release_cli(setup, "check", "--min-requests", "20", *bounds,
                                 metrics_url=server.metrics_url)
            assert result.returncode == 0, result.stderr
            return result.stdout

        assert f"Canary version {setup.new}: 0 requests" in check()
        assert "waiting for 20 requests" in check()
        send_requests(server, "canary", 25)
        promoted = check("--max-error-rate", "0.01", "--max-p99-ms", "60000")
        assert f"Version {setup.new} is stable (was {setup.old})." in promoted
        wait_for_labels(server, stable=setup.new, canary=setup.new)

        # A third version (the same model, another folder) that is far too slow
        # for its bound.
        third = setup.new + 1
        add_version(setup.serving_dir, third, setup.serving_dir / str(setup.new))
        actions.add_version(release, third, "pushed")
        actions.label_pending(release, "pushed")
        wait_for_labels(server, stable=setup.new, canary=third)
        send_requests(server, "canary", 25)
        send_requests(server, "stable", 5)
        rolled_back = check("--max-p99-ms", "0.001")
        assert f"Canary version {third} rolled back" in rolled_back
        assert f"unloaded version(s) {third}" in rolled_back
        wait_for_labels(server, stable=setup.new, canary=setup.new)
    finally:
        server.stop()

    store = connection.open_reader(connection.sqlite_config(setup.output_dir / "metadata.sqlite"))
    promote, canary, rollback = releases.history(store, MODEL)[-3:]
    assert (canary.action, canary.version) == ("canary", str(third))
    assert (promote.action, promote.version) == ("promote", str(setup.new))
    assert promote.reason.startswith(f"automatic: canary version {setup.new}: 25 requests, "
                                     "0.0% failed, p99 ")
    assert (rollback.action, rollback.version) == ("rollback", str(third))
    assert "p99 above 0.001 ms" in rollback.reason
    assert rollback.pushed_model_id is None  # no Pusher recorded the copied folder


def test_a_version_that_fails_to_load_is_dropped_and_never_labelled(setup, tmp_path):
    release = setup.release()
    actions.add_version(release, setup.old, "the version served so far")
    server = serve(setup, tmp_path, "--max_num_load_retries=0")
    try:
        release.metrics_url = server.metrics_url
        broken = setup.new + 1
        add_version(setup.serving_dir, broken, setup.serving_dir / str(setup.new))
        (setup.serving_dir / str(broken) / "saved_model.pb").write_bytes(b"not a SavedModel")
        actions.add_version(release, broken, "pushed")
        said = actions.label_pending(release, "pushed")
        assert f"Version {broken} failed to load and was dropped" in said
        check = release_cli(setup, "check", metrics_url=server.metrics_url)
        assert check.returncode == 0, check.stderr
        assert f"No canary on trial: stable and canary are version {setup.old}." in check.stdout
        wait_for_labels(server, stable=setup.old, canary=setup.old)
    finally:
        server.stop()
    store = connection.open_reader(connection.sqlite_config(setup.output_dir / "metadata.sqlite"))
    dropped = releases.history(store, MODEL)[-1]
    assert (dropped.action, dropped.version) == ("rollback", str(broken))
    assert dropped.reason.startswith("never served: ")


PAGE = """\
# TYPE :tensorflow:serving:request_count_by_version counter
:tensorflow:serving:request_count_by_version{model_name="taxi_tips",version="7",status="OK"} 180
:tensorflow:serving:request_count_by_version{model_name="taxi_tips",version="7",status="INTERNAL"} 20
:tensorflow:serving:request_count_by_version{model_name="taxi_tips",version="6",status="OK"} 900
# TYPE :tensorflow:serving:request_latency_by_version histogram
:tensorflow:serving:request_latency_by_version_bucket{model_name="taxi_tips",version="7",le="1000"} 150
:tensorflow:serving:request_latency_by_version_bucket{model_name="taxi_tips",version="7",le="5000"} 199
:tensorflow:serving:request_latency_by_version_bucket{model_name="taxi_tips",version="7",le="+Inf"} 200
:tensorflow:serving:request_latency_by_version_sum{model_name="taxi_tips",version="7"} 300000
:tensorflow:serving:request_latency_by_version_count{model_name="taxi_tips",version="7"} 200
"""


def test_failed_requests_break_the_error_rate_bound():
    health = canary_health.version_health(PAGE, MODEL, 7)
    assert (health.requests, health.failed, health.p99_ms) == (200, 20, 5.0)
    decision = policy.decide(health, policy.Bounds(100, 0.05, 500))
    assert decision.action == policy.ROLLBACK
    assert "10.0% failed" in decision.reason and "error rate above 5%" in decision.reason
    assert policy.decide(health, policy.Bounds(100, 0.2, 500)).action == policy.PROMOTE
    assert policy.decide(health, policy.Bounds(1000, 0.2, 500)).action == policy.WAIT
    assert policy.decide(health, policy.Bounds(100, 0.2, 500),
                         skew_alarm="check #3 found fare").action == policy.ROLLBACK
