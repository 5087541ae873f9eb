"""`make demo` (`python -m demo`): the whole continuous-delivery loop on one terminal.

Lays out the first spans, starts the watcher (`run_local.py --watch`), which trains
and pushes the first model; starts the model server on the release step's config
file and a client that sends traffic to /labels/stable and /labels/canary; then lets
one new span arrive at a time. Each arrival shows, as it happens: validation,
training, evaluation, infra validation, the push, the canary, its promotion (or
rollback). It ends by itself, says whether the client saw any failed request, and
prints the lineage of the stable model.
"""
import argparse
import dataclasses
import json
import pathlib
import shutil
import subprocess
import sys
import time
import urllib.request

import portpicker

from demo import traffic
from demo.processes import PROJECT_ROOT, Child

PYTHON = sys.executable
MODEL_NAME = "taxi_tips"
# Spans 1..FIRST_ARRIVAL-1 are there at the start; the rest arrive one by one.
FIRST_ARRIVAL, LAST_SPAN = 13, 16


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=pathlib.Path,
                        default=PROJECT_ROOT / "outputs" / "demo",
                        help="everything the demo makes (emptied first)")
    parser.add_argument("--arrivals", type=int, default=LAST_SPAN - FIRST_ARRIVAL + 1,
                        help="how many new spans arrive after the first model")
    parser.add_argument("--days-between", type=float, default=5.0, metavar="SECONDS",
                        help="seconds of quiet (a simulated day) after a span's model "
                             "was promoted or rolled back, before the next span arrives")
    parser.add_argument("--train-steps", type=int, default=500)
    parser.add_argument("--canary-min-requests", type=int, default=40,
                        help="requests the canary serves before it may be promoted")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="give up on a span after this many seconds")
    return parser.parse_args(argv)


@dataclasses.dataclass
class Paths:
    root: pathlib.Path

    @property
    def data(self) -> pathlib.Path:
        return self.root / "spans"

    @property
    def outputs(self) -> pathlib.Path:
        return self.root / "outputs"

    @property
    def serving_config(self) -> pathlib.Path:
        from pipeline import config as pipeline_config
        return self.outputs / pipeline_config.SERVING_CONFIG_FILE

    @property
    def monitoring_config(self) -> pathlib.Path:
        return self.root / "monitoring.config"


def say(text: str) -> None:
    print(f"demo     │ {text}", flush=True)


def lay_out_spans(paths: Paths, first: int, last: int) -> None:
    subprocess.run([PYTHON, str(PROJECT_ROOT / "data" / "make_spans.py"), "--out",
                    str(paths.data), "--first-span", str(first), "--through-span", str(last)],
                   check=True, capture_output=True)


def served_versions(paths: Paths):
    """(stable, canary) from the release step's config file; (None, None) before it."""
    from pipeline.release import serving_config
    config = serving_config.read(paths.serving_config)
    if config is None:
        return None, None
    served = serving_config.served_versions(config, MODEL_NAME)
    return served.stable, served.canary


def label_available(rest_port: int, label: str) -> bool:
    url = f"http://127.0.0.1:{rest_port}/v1/models/{MODEL_NAME}/labels/{label}"
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            states = json.load(reply).get("model_version_status", [])
    except OSError:
        return False
    return any(state.get("state") == "AVAILABLE" for state in states)


def wait_for(condition, timeout: float, what: str, watcher: Child) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if not watcher.running():
            raise RuntimeError(f"the watcher stopped while waiting for {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f}s")
        time.sleep(0.5)


def _store(paths: Paths):
    from metadata import connection
    from pipeline import config as pipeline_config
    config = pipeline_config.PipelineConfig(output_dir=paths.outputs).metadata_connection
    return connection.open_reader(config) if connection.exists(config) else None


def first_model_settled(paths: Paths, span: int) -> bool:
    """The first model is labelled stable, or the first run ended without one."""
    from metadata import runs
    if served_versions(paths)[0] is not None:
        return True
    store = _store(paths)
    return store is not None and span in runs.handled_spans(store)


def run_outcome(paths: Paths) -> str:
    """The newest run's outcome and detail, e.g. 'not blessed: auc 0.71 < 0.75'."""
    from metadata import runs
    store = _store(paths)
    contexts = store.get_contexts_by_type(runs.PIPELINE_RUN) if store else []
    if not contexts:
        return "no run recorded"
    properties = runs.run_properties(max(contexts, key=lambda c: c.id))
    return ": ".join(str(properties[key]) for key in (runs.OUTCOME, runs.OUTCOME_DETAIL)
                     if properties.get(key))


def span_settled(paths: Paths, span: int, before: tuple) -> bool:
    """The span's run is over and its model, if one was pushed, was promoted or
    rolled back: the labels agree again, and the watcher has moved on."""
    from metadata import runs

    store = _store(paths)
    if store is None or span not in runs.handled_spans(store):
        return False
    stable, canary = served_versions(paths)
    pushed = _pushed_since(paths, before)
    return not pushed or (stable == canary and stable is not None)


def _pushed_since(paths: Paths, before: tuple) -> bool:
    from pipeline import config as pipeline_config
    base = paths.outputs / pipeline_config.SERVING_MODEL_DIR / MODEL_NAME
    versions = {int(p.name) for p in base.iterdir() if p.name.isdigit()} if base.is_dir() else set()
    return bool(versions - set(before))


def run(args) -> int:
    paths = Paths(args.output_dir.resolve())
    shutil.rmtree(paths.root, ignore_errors=True)
    paths.root.mkdir(parents=True)
    rest_port, grpc_port = portpicker.pick_unused_port(), portpicker.pick_unused_port()
    metrics_url = f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics"
    paths.monitoring_config.write_text(
        'prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }\n')

    say(f"Spans 1..{FIRST_ARRIVAL - 1} are on disk; spans {FIRST_ARRIVAL}.."
        f"{FIRST_ARRIVAL + args.arrivals - 1} will arrive one at a time.")
    lay_out_spans(paths, 1, FIRST_ARRIVAL - 1)
    watcher = Child([PYTHON, str(PROJECT_ROOT / "pipeline" / "run_local.py"), "--watch",
                     "--data-dir", str(paths.data), "--output-dir", str(paths.outputs),
                     "--check-every", "1s", "--train-steps", str(args.train_steps),
                     "--serving-metrics-url", metrics_url,
                     "--canary-min-requests", str(args.canary_min_requests)],
                    prefix="pipeline │ ")
    server = client = None
    try:
        wait_for(lambda: first_model_settled(paths, FIRST_ARRIVAL - 1), args.timeout,
                 "the first model", watcher)
        if served_versions(paths)[0] is None:
            raise RuntimeError(f"the first run pushed no model ({run_outcome(paths)}); "
                               "nothing to serve, so the demo stops here")
        say(f"First model pushed. Starting the model server on {paths.serving_config} "
            f"(REST :{rest_port}, gRPC :{grpc_port}).")
        server = Child([PYTHON, "-m", "serving", f"--port={grpc_port}",
                        f"--rest_api_port={rest_port}",
                        f"--model_config_file={paths.serving_config}",
                        "--model_config_file_poll_wait_seconds=1",
                        f"--monitoring_config_file={paths.monitoring_config}"],
                       log_path=paths.root / "logs" / "server.log")
        wait_for(lambda: label_available(rest_port, "stable"), 120, "the server", watcher)
        instances = traffic.read_instances(paths.data / f"span-{FIRST_ARRIVAL - 1}" / "data.csv")
        client = traffic.TrafficClient(rest_port, MODEL_NAME, instances).start()
        say("Client started: about 20 requests/s, a quarter of them to the canary.")

        for span in range(FIRST_ARRIVAL, FIRST_ARRIVAL + args.arrivals):
            time.sleep(args.days_between)
            base = paths.outputs / "serving_model" / MODEL_NAME
            before = tuple(int(p.name) for p in base.iterdir() if p.name.isdigit())
            say(f"Day {span - FIRST_ARRIVAL + 1}: span {span} arrives. "
                f"Client so far: {client.tally.describe()}.")
            lay_out_spans(paths, span, span)
            wait_for(lambda: span_settled(paths, span, before), args.timeout,
                     f"span {span} to be released", watcher)
            stable, canary = served_versions(paths)
            say(f"Span {span} settled: stable is version {stable}. "
                f"Client so far: {client.tally.describe()}.")
    finally:
        tally = client.stop() if client else None
        watcher.stop()
        if server:
            server.stop()
    stable, _ = served_versions(paths)
    failed = tally.total_failed() if tally else 0
    if tally:  # for scripts and the demo's test: what the client saw, by label
        (paths.root / "client_tally.json").write_text(json.dumps(
            {"ok": dict(tally.ok), "failed": dict(tally.failed),
             "last_error": tally.last_error}, indent=1))
    say(f"Client: {tally.describe() if tally else 'never started'}. "
        f"{'Zero failed requests.' if tally and not failed else f'{failed} FAILED requests.'}")
    for label, error in (tally.last_error.items() if tally else ()):
        say(f"  last failure on {label}: {error}")
    say(f"Lineage of the stable model, version {stable}:")
    subprocess.run([PYTHON, "-m", "pipeline.lineage", "--metadata-path",
                    str(paths.outputs / "metadata.sqlite"), "model", "--version", str(stable)],
                   cwd=PROJECT_ROOT)
    return 0 if tally and not failed else 1


def main(argv=None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
