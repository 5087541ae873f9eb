"""Predict latency and throughput of the model server over REST and gRPC, with and
without --enable_batching, against the same SavedModel signature called in-process.

    python benchmarks/serving_load.py            # the pushed taxi_tips model, serving_raw
    python benchmarks/serving_load.py --model_base_path=/path/to/base --signature=serving_default

A script, not a test: it starts the server through serving.launch on loopback ports,
runs bounded closed-loop load and writes benchmarks/serving_results.md.
"""
import argparse
import csv
import datetime
import glob
import http.client
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import portpicker  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from serving.client import GrpcClient, RestClient  # noqa: E402

WORK_DIR = REPO / "benchmarks" / "_work"  # server logs; git-ignored
PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
FINDINGS = "## Findings"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_base_path", default=str(REPO / "outputs" / "serving_model"
                                                         / "taxi_tips"))
    parser.add_argument("--model_name", default="taxi_tips")
    parser.add_argument("--signature", default="serving_raw")
    parser.add_argument("--data_glob", default=str(REPO / "data" / "spans" / "*" / "*.csv"),
                        help="CSV rows to take realistic raw feature values from")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--transports", default="rest,grpc")
    parser.add_argument("--batching", default="off,on", help="off, on, or both: off,on")
    parser.add_argument("--batching_parameters_file", default="",
                        help="passed to the server with --enable_batching (else its defaults)")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="measured time per run")
    parser.add_argument("--warmup_seconds", type=float, default=1.0)
    parser.add_argument("--rows_per_request", type=int, default=1)
    parser.add_argument("--server", default="python",
                        help="serving.launch --server choice: auto, tensorflow_model_server, "
                        "docker or python")
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "serving_results.md"))
    return parser.parse_args(argv)


# --- the model and its inputs ------------------------------------------------------------------

def latest_version_dir(base_path: str) -> Path:
    versions = [p for p in Path(base_path).glob("[0-9]*") if p.name.isdigit()
                and (p / "saved_model.pb").exists()]
    if not versions:
        sys.exit(f"no SavedModel version under {base_path}: run `make run` to push the "
                 "taxi_tips model, or pass --model_base_path (and --signature) for another")
    return max(versions, key=lambda p: int(p.name))


def signature_input_dtypes(version_dir: Path, signature: str) -> dict:
    """{input name: numpy dtype}, read from the SavedModel so no name is hard-coded here."""
    import tensorflow as tf
    from serving.servable import read_signature_defs

    signatures = read_signature_defs(str(version_dir))
    if signature not in signatures:
        sys.exit(f"signature {signature!r} not in {version_dir}: has {sorted(signatures)}")
    return {name: np.dtype(tf.dtypes.as_dtype(info.dtype).as_numpy_dtype)
            for name, info in sorted(signatures[signature].inputs.items())}


def realistic_rows(data_glob: str, dtypes: dict, count: int) -> tuple:
    """(rows, source): complete CSV rows for the signature's inputs, or made-up values
    when the CSVs do not have these columns (e.g. a test model)."""
    rows = []
    for path in sorted(glob.glob(data_glob)):
        with open(path, newline="", encoding="utf-8") as handle:
            for record in csv.DictReader(handle):
                if all(record.get(name) not in (None, "") for name in dtypes):
                    rows.append({name: _cast(record[name], dtype)
                                 for name, dtype in dtypes.items()})
                    if len(rows) == count:
                        return rows, "taxi CSV data"
    rng = np.random.default_rng(0)
    rows = [{name: _cast(str(rng.integers(1, 10)), dtype) for name, dtype in dtypes.items()}
            for _ in range(count)]
    return rows, "made-up values"


def _cast(text: str, dtype):
    if dtype == object:
        return text
    return dtype.type(float(text)).item() if np.issubdtype(dtype, np.integer) \
        else dtype.type(text).item()


def as_arrays(rows: list, dtypes: dict) -> dict:
    return {name: np.array([row[name] if dtype != object else row[name].encode()
                            for row in rows], dtype=dtype)
            for name, dtype in dtypes.items()}


# --- load generation ---------------------------------------------------------------------------

def run_load(make_call, concurrency: int, seconds: float, warmup: float):
    """Closed loop: `concurrency` threads, each sending its next request when the last one
    returns. Returns (latencies in seconds, measured wall time, failures)."""
    latencies, failures = [], []
    lock = threading.Lock()
    start_barrier = threading.Barrier(concurrency + 1)
    timing = {}

    def worker(index):
        call = make_call(index)
        start_barrier.wait()
        mine, errors_seen = [], 0
        while time.monotonic() < timing["end"]:
            began = time.monotonic()
            try:
                call()
            except Exception:  # counted, reported; a benchmark must not hide failures
                errors_seen += 1
                continue
            if began >= timing["measure_from"]:
                mine.append(time.monotonic() - began)
        with lock:
            latencies.extend(mine)
            failures.append(errors_seen)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    now = time.monotonic()
    timing["measure_from"] = now + warmup
    timing["end"] = now + warmup + seconds
    start_barrier.wait()
    for thread in threads:
        thread.join()
    return latencies, seconds, sum(failures)


def rest_call_factory(port, model, signature, requests_rows):
    bodies = [json.dumps({"signature_name": signature, "instances": rows}).encode()
              for rows in requests_rows]
    path = f"/v1/models/{model}:predict"

    def make(index):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        counter = [index]

        def call():
            body = bodies[counter[0] % len(bodies)]
            counter[0] += 1
            connection.request("POST", path, body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            payload = response.read()
            if response.status != 200:
                raise RuntimeError(payload[:200])
        return call
    return make


def grpc_call_factory(port, model, signature, requests_arrays):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    payloads = []
    for arrays in requests_arrays:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.model_spec.signature_name = signature
        for name, value in arrays.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        payloads.append(request.SerializeToString())

    def make(index):
        # Pre-serialized bytes both ways: the client's proto work stays out of the timing.
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        predict = channel.unary_unary(PREDICT_METHOD)
        counter = [index]

        def call():
            predict(payloads[counter[0] % len(payloads)], timeout=60)
            counter[0] += 1
        return call
    return make


def in_process_call_factory(version_dir, signature, requests_arrays):
    import tensorflow as tf
    try:
        import tensorflow_transform  # noqa: F401  (registers TFT ops the graph may use)
    except ImportError:
        pass
    function = tf.saved_model.load(str(version_dir)).signatures[signature]
    feeds = [{name: tf.constant(value) for name, value in arrays.items()}
             for arrays in requests_arrays]

    def make(index):
        counter = [index]

        def call():
            outputs = function(**feeds[counter[0] % len(feeds)])
            counter[0] += 1
            return {name: tensor.numpy() for name, tensor in outputs.items()}
        return call
    return make, function, feeds


def summarize(runs):
    """Median over repetitions of p50, p99 (ms) and throughput (requests/s)."""
    p50 = statistics.median(np.percentile(lat, 50) * 1000 for lat, _, _ in runs)
    p99 = statistics.median(np.percentile(lat, 99) * 1000 for lat, _, _ in runs)
    throughput = statistics.median(len(lat) / seconds for lat, seconds, _ in runs)
    return {"p50_ms": p50, "p99_ms": p99, "rps": throughput,
            "requests": sum(len(lat) for lat, _, _ in runs),
            "failures": sum(failed for _, _, failed in runs)}


def measure(make_call, concurrency, args):
    return summarize([run_load(make_call, concurrency, args.seconds, args.warmup_seconds)
                      for _ in range(args.repetitions)])


# --- the server --------------------------------------------------------------------------------

def start_server(args, batching: bool):
    grpc_port, rest_port = portpicker.pick_unused_port(), portpicker.pick_unused_port()
    command = [sys.executable, "-m", "serving.launch", f"--server={args.server}",
               f"--port={grpc_port}", f"--rest_api_port={rest_port}",
               f"--model_name={args.model_name}", f"--model_base_path={args.model_base_path}",
               "--file_system_poll_wait_seconds=0"]
    if batching:
        command.append("--enable_batching")
        if args.batching_parameters_file:
            command.append(f"--batching_parameters_file={args.batching_parameters_file}")
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    log_path = WORK_DIR / f"server-batching-{'on' if batching else 'off'}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT,
                                   env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    try:
        RestClient("127.0.0.1", rest_port).wait_until_available(args.model_name, timeout=300)
    except Exception:
        process.terminate()
        raise RuntimeError(f"server did not come up; see {log_path}") from None
    picked = next((line for line in log_path.read_text().splitlines()
                   if line.startswith("serving.launch: ") and "running" not in line), "")
    return process, grpc_port, rest_port, picked


def check_answers_agree(grpc_port, rest_port, args, rows, arrays, expected):
    """One request per transport, compared with the in-process outputs before timing."""
    with GrpcClient("127.0.0.1", grpc_port) as client:
        got = client.predict(args.model_name, arrays, signature_name=args.signature)
    for name, value in expected.items():
        if value.dtype == object:
            np.testing.assert_array_equal(got[name], value)
        else:
            np.testing.assert_allclose(got[name], value, rtol=1e-5)
    with RestClient("127.0.0.1", rest_port) as client:
        predictions = client.predict(args.model_name, instances=rows,
                                     signature_name=args.signature)
    if len(predictions) != len(rows):
        raise AssertionError(f"REST answered {len(predictions)} rows for {len(rows)}")


# --- the report --------------------------------------------------------------------------------

def _load_average() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def machine_description(load_at_start: str) -> str:
    model = "unknown CPU"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    with open("/proc/meminfo", encoding="utf-8") as handle:
        kib = int(handle.readline().split()[1])
    return (f"{os.cpu_count()} cores ({model}), {kib / 1024 / 1024:.0f} GiB RAM, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}; "
            f"load average (1/5/15 min) {load_at_start} at the start, {_load_average()} at "
            "the end (other work on the machine shows here)")


def write_report(path, args, results, in_process, context):
    def row(mode, batching, concurrency, stats):
        ceiling = in_process.get(concurrency)
        ratio = f"{stats['p50_ms'] / ceiling['p50_ms']:.1f}x" if ceiling else "-"
        failures = f" ({stats['failures']} failed)" if stats["failures"] else ""
        return (f"| {mode} | {batching} | {concurrency} | {stats['p50_ms']:.2f} | "
                f"{stats['p99_ms']:.2f} | {stats['rps']:.0f}{failures} | {ratio} |")

    lines = [
        "# Model server load benchmark",
        "",
        f"- Date: {context['date']}",
        f"- Machine: {context['machine']}",
        f"- Command: `{context['command']}`",
        f"- Model: `{context['version_dir']}`, signature `{args.signature}` with inputs "
        f"{', '.join(f'`{n}`' for n in context['inputs'])}",
        f"- Request: {args.rows_per_request} row(s) of {context['row_source']} per predict call",
        f"- Server: {context['server']}",
        f"- Each cell: median of {args.repetitions} runs of {args.seconds:g} s closed-loop load "
        f"(after {args.warmup_seconds:g} s warm-up); latency percentiles are per request, "
        "throughput is successful requests per second",
        "- Ratio: the server's p50 over the in-process p50 at the same concurrency",
        "",
        "| mode | batching | concurrency | p50 ms | p99 ms | requests/s | p50 vs in-process |",
        "|---|---|---|---|---|---|---|",
    ]
    for concurrency, stats in sorted(in_process.items()):
        lines.append(row("in-process (SavedModel signature)", "-", concurrency, stats))
    for (transport, batching, concurrency), stats in results:
        lines.append(row(transport, batching, concurrency, stats))
    lines += ["", "## Reading it", ""] + context["notes"]
    # A hand-written "## Findings" section survives a re-run; only the numbers change.
    previous = Path(path).read_text(encoding="utf-8") if Path(path).exists() else ""
    findings = previous[previous.find(FINDINGS):] if FINDINGS in previous else ""
    Path(path).write_text("\n".join(lines) + "\n" + ("\n" + findings if findings else ""),
                          encoding="utf-8")


def main(argv=None):
    args = parse_args(argv)
    load_at_start = _load_average()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    version_dir = latest_version_dir(args.model_base_path)
    dtypes = signature_input_dtypes(version_dir, args.signature)
    pool, row_source = realistic_rows(args.data_glob, dtypes, 64 * args.rows_per_request)
    requests_rows = [pool[i:i + args.rows_per_request]
                     for i in range(0, len(pool), args.rows_per_request)]
    requests_arrays = [as_arrays(rows, dtypes) for rows in requests_rows]

    print(f"model {version_dir}, signature {args.signature}, inputs {sorted(dtypes)}",
          flush=True)
    make_local, function, feeds = in_process_call_factory(version_dir, args.signature,
                                                          requests_arrays)
    expected = {name: t.numpy() for name, t in function(**feeds[0]).items()}
    in_process = {}
    for concurrency in concurrencies:
        in_process[concurrency] = measure(make_local, concurrency, args)
        print(f"in-process c={concurrency}: {in_process[concurrency]}", flush=True)

    results, servers = [], []
    for batching in args.batching.split(","):
        process, grpc_port, rest_port, picked = start_server(args, batching == "on")
        servers.append(picked)
        try:
            check_answers_agree(grpc_port, rest_port, args, requests_rows[0],
                                requests_arrays[0], expected)
            for transport in args.transports.split(","):
                make = (rest_call_factory(rest_port, args.model_name, args.signature,
                                          requests_rows) if transport == "rest" else
                        grpc_call_factory(grpc_port, args.model_name, args.signature,
                                          requests_arrays))
                for concurrency in concurrencies:
                    stats = measure(make, concurrency, args)
                    results.append(((transport.upper() if transport == "rest" else "gRPC",
                                     batching, concurrency), stats))
                    print(f"{transport} batching={batching} c={concurrency}: {stats}",
                          flush=True)
        finally:
            process.terminate()
            process.wait(timeout=60)

    context = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_description(load_at_start),
        "command": shlex.join([os.path.relpath(sys.executable, REPO), "benchmarks/serving_load.py",
                               *(sys.argv[1:] if argv is None else argv)]),
        "version_dir": os.path.relpath(version_dir, REPO),
        "inputs": sorted(dtypes),
        "row_source": row_source,
        "server": "; ".join(sorted(set(servers))),
        "notes": [
            "- The load generator runs in the same process as the in-process ceiling and "
            "on the same 2 cores as the server, so at high concurrency client and server "
            "compete for CPU; absolute numbers are for comparing rows, not for capacity "
            "planning.",
            "- gRPC requests are pre-serialized and REST bodies pre-encoded, so the client's "
            "own encoding is outside the timing.",
        ],
    }
    write_report(args.output, args, results, in_process, context)
    print(f"wrote {args.output}", flush=True)


if __name__ == "__main__":
    main()
