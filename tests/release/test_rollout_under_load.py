"""A new version becomes the canary, is promoted and rolled back while clients
keep calling /labels/stable and /labels/canary over REST and gRPC: not one call
fails, and the labels end where each step says."""
from pipeline.release import actions, serving_config
from tests.release.conftest import MODEL, Clients, release_cli, serve, wait_for_labels


def test_canary_promotion_and_rollback_fail_no_request(setup, tmp_path):
    release = setup.release()
    actions.add_version(release, setup.old, "the version served so far")
    server = serve(setup, tmp_path)
    try:
        wait_for_labels(server, stable=setup.old, canary=setup.old)
        release.metrics_url = server.metrics_url
        with Clients(server) as clients:
            clients.wait_for_calls(20)

            # As the pipeline's ReleaseCanary does after a push.
            actions.add_version(release, setup.new, "pushed")
            assert "is the canary" in actions.label_pending(release, "pushed")
            wait_for_labels(server, stable=setup.old, canary=setup.new)
            clients.wait_for_calls(40)

            promoted = release_cli(setup, "promote", "--reason", "looks good",
                                   metrics_url=server.metrics_url)
            assert promoted.returncode == 0, promoted.stderr
            wait_for_labels(server, stable=setup.new, canary=setup.new)
            clients.wait_for_calls(40)

            rolled_back = release_cli(setup, "rollback", "--reason", "tips look wrong",
                                      metrics_url=server.metrics_url)
            assert rolled_back.returncode == 0, rolled_back.stderr
            wait_for_labels(server, stable=setup.old, canary=setup.old)
            clients.wait_for_calls(40)
        assert clients.failures == [], clients.failures[:5]
        assert clients.calls >= 140
        # The rolled-back version is unloaded once no label names it; the old one serves.
        assert f"unloaded version(s) {setup.new}" in rolled_back.stdout
        assert serving_config.served_versions(serving_config.read(setup.config_path), MODEL) \
            == serving_config.ServedVersions((setup.old,), setup.old, setup.old)
    finally:
        server.stop()
