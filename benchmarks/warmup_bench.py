"""First-request latency with and without SavedModel warmup: how long the first predict
after a version becomes AVAILABLE takes when the version ships
assets.extra/tf_serving_warmup_requests, against the same version without the file.

    python benchmarks/warmup_bench.py --model_base_path=outputs/serving_model/taxi_tips

A script, not a test. The version is copied twice under benchmarks/_work (one copy gets a
warmup file of --warmup_records predicts of the benchmark's row); every run starts a new
server process on one copy, waits until it serves (our server opens its ports only once
the version is AVAILABLE, warmup included), opens a connection, then times the first
predict and the second. Runs alternate between the copies, so load from elsewhere on the
machine hits both alike; each cell is the median of --runs runs. Rewrites the
"## First request with and without warmup" section of benchmarks/serving_results.md.
"""
import argparse
import datetime
import http.client
import json
import os
import re
import shlex
import shutil
import statistics
import sys
import time
from pathlib import Path

import portpicker

sys.path.insert(0, str(Path(__file__).resolve().parent))

import serving_bench as bench  # noqa: E402  (also puts the repository on sys.path)

SECTION = "## First request with and without warmup"
LOADED = re.compile(r"Successfully loaded servable version \{name: \S+ version: \d+\} "
                    r"in ([0-9.]+)s")
VARIANTS = ("without warmup", "with warmup")
NOTE = ("- Without warmup the first predict pays for TensorFlow's lazy initialization of the "
        "signature (the session prunes and optimizes its graph on the first run); warmup pays "
        "it during the load instead (the version load column), while an older version, if "
        "any, still serves. Load time has the server log's 0.1 s resolution.")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_base_path", default=str(bench.REPO / "outputs"
                                                         / "serving_model" / "taxi_tips"))
    parser.add_argument("--model_name", default="taxi_tips")
    parser.add_argument("--signature", default="serving_raw")
    parser.add_argument("--data_glob", default=str(bench.REPO / "data" / "spans" / "*"
                                                   / "*.csv"))
    parser.add_argument("--protocols", default="REST,gRPC")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup_records", type=int, default=1)
    parser.add_argument("--output", default=str(bench.REPO / "benchmarks"
                                                / "serving_results.md"))
    return parser.parse_args(argv)


def model_copies(version_dir: Path, message: bytes, warmup_records: int) -> dict:
    """{variant: base path}: the version copied as version 1, once as it is and once with a
    warmup file of `warmup_records` predict logs of the benchmark's request."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    from serving import tfrecord_files, warmup

    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.CopyFrom(predict_pb2.PredictRequest.FromString(message))
    bases = {}
    for variant in VARIANTS:
        base = bench.WORK_DIR / "warmup_bench" / variant.replace(" ", "_")
        shutil.rmtree(base, ignore_errors=True)
        shutil.copytree(version_dir, base / "1")
        if variant == "with warmup":
            path = Path(warmup.warmup_requests_path(str(base / "1")))
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(tfrecord_files.frame(log.SerializeToString()) * warmup_records)
        bases[variant] = base
    return bases


def start_server(args, base, variant, run):
    grpc_port, rest_port = portpicker.pick_unused_port(), portpicker.pick_unused_port()
    command = [sys.executable, "-m", "serving", f"--port={grpc_port}",
               f"--rest_api_port={rest_port}", f"--model_name={args.model_name}",
               f"--model_base_path={base}"]
    started = time.monotonic()
    server = bench.Server(f"our server {variant}", command,
                          f"warmup-{variant.replace(' ', '_')}-{run}",
                          f"http://127.0.0.1:{rest_port}/v1/models/{args.model_name}",
                          env={"PYTHONPATH": str(bench.REPO)})
    server.ready_seconds = time.monotonic() - started
    server.grpc_port, server.rest_port = grpc_port, rest_port
    return server


def rest_predicts(server, args, body: bytes) -> tuple:
    """([ms of the first predict, ms of the second], the first's predictions), on one
    connection opened beforehand."""
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=120)
    connection.connect()
    times, outputs = [], []
    try:
        for _ in range(2):
            started = time.perf_counter()
            connection.request("POST", f"/v1/models/{args.model_name}:predict", body,
                               {"Content-Type": "application/json"})
            response = connection.getresponse()
            payload = response.read()
            times.append((time.perf_counter() - started) * 1000)
            if response.status != 200:
                raise RuntimeError(f"predict: {response.status} {payload[:300]!r}")
            outputs.append(json.loads(payload)["predictions"])
    finally:
        connection.close()
    return times, outputs[0]


def grpc_predicts(server, message: bytes) -> tuple:
    """([ms of the first predict, ms of the second], the first's outputs), on one channel
    connected beforehand."""
    import grpc
    from tensorflow_serving.apis import predict_pb2

    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        grpc.channel_ready_future(channel).result(timeout=60)
        predict = channel.unary_unary(bench.TF_PREDICT)
        times, first = [], None
        for _ in range(2):
            started = time.perf_counter()
            response = predict(message, timeout=120)
            times.append((time.perf_counter() - started) * 1000)
            first = first or response
    outputs = predict_pb2.PredictResponse.FromString(first).outputs
    return times, {name: list(tensor.float_val) for name, tensor in sorted(outputs.items())}


def load_seconds(server) -> float:
    """The version's load time as the server logged it (warmup included)."""
    found = LOADED.search(Path(server.log_path).read_text(errors="replace"))
    return float(found.group(1)) if found else float("nan")


def run_all(args, bases, rest_body: bytes, message: bytes) -> dict:
    """{(protocol, variant): [(first ms, second ms, load s, ready s), ...]}."""
    results = {(p, v): [] for p in args.protocols.split(",") for v in VARIANTS}
    outputs = {}
    for run in range(args.runs):
        for protocol in args.protocols.split(","):
            for variant in VARIANTS:
                server = start_server(args, bases[variant], variant, run)
                try:
                    if protocol == "REST":
                        times, output = rest_predicts(server, args, rest_body)
                    else:
                        times, output = grpc_predicts(server, message)
                finally:
                    server.stop()
                # Warmup must not change an answer.
                if outputs.setdefault(protocol, output) != output:
                    raise RuntimeError(f"{protocol} {variant} answered {output}, "
                                       f"not {outputs[protocol]}")
                results[(protocol, variant)].append(
                    (times[0], times[1], load_seconds(server), server.ready_seconds))
                print(f"run {run + 1} {protocol} {variant}: first {times[0]:.1f} ms, "
                      f"second {times[1]:.2f} ms, load {load_seconds(server):.2f} s; "
                      f"load average {bench._load_average()}", flush=True)
    return results


def write_section(path, args, results, context):
    lines = [
        SECTION,
        "",
        f"- Date: {context['date']}; `{context['command']}`",
        f"- Machine: {context['machine']}. The machine was shared with other jobs (other "
        "helpers' tests and benchmarks) during the run.",
        f"- Model: `{context['version_dir']}`, signature `{args.signature}`, one row of "
        f"{context['row_source']} per request; \"with warmup\": the same version plus "
        f"assets.extra/tf_serving_warmup_requests holding {args.warmup_records} predict "
        "log(s) of that request (default --num_request_iterations_for_warmup)",
        f"- Each run a new server process (our server, batching off); the connection is "
        "opened before the first request is timed; each cell the median of "
        f"{args.runs} runs, the variants alternating",
        "",
        "| protocol | warmup | first predict ms | second predict ms | version load s "
        "(server log) | process start to serving s |",
        "|---|---|---|---|---|---|",
    ]
    for (protocol, variant), runs in results.items():
        first, second, load, ready = (statistics.median(r[i] for r in runs) for i in range(4))
        lines.append(f"| {protocol} | {variant} | {first:.1f} | {second:.2f} | {load:.1f} | "
                     f"{ready:.1f} |")
    lines += ["", NOTE, ""]
    bench.replace_section(path, SECTION, lines)
    return lines


def main(argv=None):
    args = parse_args(argv)
    bench.WORK_DIR.mkdir(parents=True, exist_ok=True)
    load_at_start = bench._load_average()
    version_dir = bench.latest_version_dir(args.model_base_path)
    dtypes = bench.signature_input_dtypes(version_dir, args.signature)
    row, row_source = bench.realistic_row(args.data_glob, dtypes)
    arrays = bench.as_arrays([row], dtypes)
    rest_body, _, message = bench.predict_bodies(args.model_name, args.signature, row, arrays,
                                                 "warmup")
    bases = model_copies(version_dir, message, args.warmup_records)
    results = run_all(args, bases, rest_body.read_bytes(), message)
    context = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": bench.machine_description(load_at_start),
        "command": shlex.join(["python", "benchmarks/warmup_bench.py",
                               *(sys.argv[1:] if argv is None else argv)]),
        "version_dir": os.path.relpath(version_dir, bench.REPO),
        "row_source": row_source,
    }
    lines = write_section(args.output, args, results, context)
    print("\n".join(lines), flush=True)
    print(f"wrote the {SECTION!r} section of {args.output}", flush=True)


if __name__ == "__main__":
    main()
