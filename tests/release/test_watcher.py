"""The watcher with `--serving-metrics-url` makes one release decision per look:
it says once that the canary waits for requests, and promotes it once it served
enough within the bounds."""
from pipeline.release import actions
from tests.continuous.conftest import Watcher, wait_for
from tests.release.conftest import send_requests, serve, wait_for_labels

DEFAULT_MIN_REQUESTS = 100  # pipeline/config.py's canary_min_requests


def test_watcher_promotes_a_healthy_canary(setup, tmp_path):
    release = setup.release()
    actions.add_version(release, setup.old, "the version served so far")
    server = serve(setup, tmp_path)
    watcher = None
    try:
        release.metrics_url = server.metrics_url
        actions.add_version(release, setup.new, "pushed")
        actions.label_pending(release, "pushed")
        wait_for_labels(server, stable=setup.old, canary=setup.new)

        # Every span on disk was handled by the shared runs: the watcher only looks.
        watcher = Watcher(setup.data_dir, setup.output_dir, "--check-every", "1s",
                          "--serving-metrics-url", server.metrics_url)
        waiting = f"waiting for {DEFAULT_MIN_REQUESTS} requests"
        wait_for(lambda: waiting in watcher.output(), what="the watcher to judge the canary",
                 process=watcher.process)
        send_requests(server, "canary", DEFAULT_MIN_REQUESTS)
        wait_for(lambda: f"Version {setup.new} is stable (was {setup.old})." in watcher.output(),
                 what="the watcher to promote the canary", process=watcher.process)
        wait_for_labels(server, stable=setup.new, canary=setup.new)
        assert watcher.stop() == 0
        # Said once, though the watcher looked every second while the requests came.
        assert watcher.output().count(waiting) == 1
        assert "Pipeline taxi_tips:" not in watcher.output()  # no pipeline run was started
    finally:
        if watcher is not None and watcher.process.poll() is None:
            watcher.kill()
        server.stop()
