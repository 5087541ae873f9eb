"""Predict latency and throughput of the model server against the same SavedModel signature
called in-process and served by the Python servers a user would pick without TF Serving's
binary (KServe's ModelServer, MLServer), driven by load generators that are not Python.

    python benchmarks/serving_bench.py            # the pushed taxi_tips model, serving_raw
    python benchmarks/serving_bench.py --servers=ours --concurrency=32
    python benchmarks/serving_bench.py --model_base_path=/path/to/base --signature=serving_default

Needs `bash benchmarks/peers/setup.sh` once (wrk, h2load and the peers' venvs). A script,
not a test: it starts each server on loopback ports, runs bounded closed-loop load (each
client sends its next request when the last one is answered) and rewrites
benchmarks/serving_results.md, keeping its hand-written Findings.
"""
import argparse
import csv
import datetime
import glob
import http.client
import json
import os
import platform
import re
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

from serving.client import GrpcClient  # noqa: E402

WORK_DIR = REPO / "benchmarks" / "_work"  # bodies, scripts, server logs; git-ignored
PEERS_CODE = REPO / "benchmarks" / "peers"
TF_PREDICT = "/tensorflow.serving.PredictionService/Predict"
V2_INFER = "/inference.GRPCInferenceService/ModelInfer"
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
    parser.add_argument("--servers", default="ours,kserve,mlserver",
                        help="which servers to run: ours, kserve, mlserver")
    parser.add_argument("--batching", default="off,on", help="our server: off, on, or off,on")
    parser.add_argument("--batching_parameters_file", default="",
                        help="passed to our server with --enable_batching (else its defaults)")
    parser.add_argument("--peers_dir", default=os.environ.get("PEERS_DIR", "/work/peers"),
                        help="where benchmarks/peers/setup.sh put the peers' venvs")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="measured time per run")
    parser.add_argument("--warmup_seconds", type=float, default=1.0)
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


def realistic_row(data_glob: str, dtypes: dict) -> tuple:
    """(row, source): one complete CSV row for the signature's inputs, or made-up values
    when the CSVs do not have these columns (e.g. a test model)."""
    for path in sorted(glob.glob(data_glob)):
        with open(path, newline="", encoding="utf-8") as handle:
            for record in csv.DictReader(handle):
                if all(record.get(name) not in (None, "") for name in dtypes):
                    return ({name: _cast(record[name], dtype)
                             for name, dtype in dtypes.items()}, "taxi CSV data")
    return {name: _cast("3", dtype) for name, dtype in dtypes.items()}, "made-up values"


def _cast(text: str, dtype):
    if dtype == object:
        return text
    return dtype.type(float(text)).item() if np.issubdtype(dtype, np.integer) \
        else dtype.type(text).item()


def as_arrays(rows: list, dtypes: dict) -> dict:
    return {name: np.array([row[name] if dtype != object else row[name].encode()
                            for row in rows], dtype=dtype)
            for name, dtype in dtypes.items()}


# --- the in-process ceiling --------------------------------------------------------------------

def in_process_calls(version_dir, signature, arrays):
    """{label: call()}: the signature run in this process with no transport, codec or
    queue, as our server runs it (a session, serving.signature_runner) and as the peers
    run it (the restored TF2 function a user's custom model calls). Ratios in the table
    are to the first; both answers are checked against each other."""
    import tensorflow as tf
    from serving.servable import SERVE_TAG, read_saved_model, serve_meta_graph
    from serving.signature_runner import load_runner

    saved_model = read_saved_model(str(version_dir))
    runner = load_runner(str(version_dir), saved_model, [SERVE_TAG],
                         dict(serve_meta_graph(saved_model).signature_def))
    function = tf.saved_model.load(str(version_dir)).signatures[signature]
    feeds = {name: tf.constant(value) for name, value in arrays.items()}
    calls = {
        "in-process (the server's session runner)": lambda: runner.run(signature, arrays),
        "in-process (restored TF2 function, as the peers call it)":
            lambda: {name: t.numpy() for name, t in function(**feeds).items()},
    }
    answers = [call() for call in calls.values()]
    for other in answers[1:]:
        check_close("in-process", other, answers[0])
    return calls, answers[0]


def _threaded_load(call, concurrency, seconds, warmup):
    latencies, lock = [], threading.Lock()
    start_barrier = threading.Barrier(concurrency + 1)
    timing = {}

    def worker():
        start_barrier.wait()
        mine = []
        while time.monotonic() < timing["end"]:
            began = time.monotonic()
            call()
            if began >= timing["measure_from"]:
                mine.append(time.monotonic() - began)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    now = time.monotonic()
    timing["measure_from"], timing["end"] = now + warmup, now + warmup + seconds
    start_barrier.wait()
    for thread in threads:
        thread.join()
    return {"p50_ms": np.percentile(latencies, 50) * 1000,
            "p99_ms": np.percentile(latencies, 99) * 1000,
            "rps": len(latencies) / seconds, "failures": 0, "client_cpu": None}


# --- load generators (not Python) --------------------------------------------------------------

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "failures": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def _run_measured(command, env=None):
    """Runs a load generator; returns (stdout, its CPU seconds, wall seconds)."""
    began = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=dict(os.environ, **(env or {})))
    output = process.stdout.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - began
    if process.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({process.returncode}):\n{output}")
    return output, usage.ru_utime + usage.ru_stime, wall


def wrk_run(url, body_path, concurrency, seconds):
    """HTTP/1.1 keep-alive connections, one request in flight on each (wrk -c)."""
    script = WORK_DIR / "post.lua"
    script.write_text(WRK_SCRIPT)
    # One wrk thread: its event loop handles 32 connections with CPU to spare, and
    # every core it does not take is the server's.
    output, cpu, wall = _run_measured(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--timeout", "30s",
         "-s", str(script), url], env={"BENCH_BODY": str(body_path)})
    found = json.loads(re.search(r"^BENCH (.*)$", output, re.M).group(1))
    measured = found["duration_us"] / 1e6
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    failures = found["failures"] + (int(non_2xx.group(1)) if non_2xx else 0)
    return {"p50_ms": found["p50_us"] / 1000, "p99_ms": found["p99_us"] / 1000,
            "rps": (found["requests"] - failures) / measured, "failures": failures,
            "client_cpu": cpu / wall}


def h2load_run(url, body_path, concurrency, seconds, response_bytes):
    """gRPC: h2load sends the pre-built length-prefixed message with gRPC's headers on
    `concurrency` HTTP/2 connections, one stream in flight on each (-m1).

    h2load sees HTTP statuses, not gRPC's (an error is HTTP 200 with grpc-status in the
    trailers and no message), so requests that got no full response message count as
    failures: failures = requests - DATA bytes received // one response's size.
    """
    log_path = WORK_DIR / "h2load.log"
    log_path.unlink(missing_ok=True)  # h2load appends to its log file
    output, cpu, wall = _run_measured(
        ["h2load", "-t1", f"-c{concurrency}", "-m1", f"-D{seconds:g}",
         "-d", str(body_path), "-H", "content-type: application/grpc", "-H", "te: trailers",
         "--log-file", str(log_path), url])
    latencies_us = [int(line.split("\t")[2]) for line in log_path.read_text().splitlines()
                    if line.strip()]
    data = re.search(r"^traffic: .*\((\d+)\) data", output, re.M)
    done = re.search(r"^requests: \d+ total, \d+ started, (\d+) done", output, re.M)
    requests = int(done.group(1))
    successes = min(requests, int(data.group(1)) // response_bytes)
    return {"p50_ms": np.percentile(latencies_us, 50) / 1000,
            "p99_ms": np.percentile(latencies_us, 99) / 1000,
            "rps": successes / seconds, "failures": requests - successes,
            "client_cpu": cpu / wall}


def summarize(runs):
    """Median over repetitions of each figure."""
    return {key: (statistics.median(run[key] for run in runs)
                  if runs[0][key] is not None else None)
            for key in ("p50_ms", "p99_ms", "rps", "client_cpu")} | {
        "failures": sum(run["failures"] for run in runs)}


# --- the servers -------------------------------------------------------------------------------

class Server:
    """One server process under test, with the endpoints each protocol's load uses."""

    def __init__(self, label, command, log_name, ready_url, cwd=REPO, env=None):
        WORK_DIR.mkdir(parents=True, exist_ok=True)
        self.label = label
        self.log_path = WORK_DIR / f"{log_name}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=str(cwd), stdout=log, stderr=subprocess.STDOUT,
                env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {})),
                start_new_session=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{label} exited; see {self.log_path}")
            try:
                if http_get(ready_url) == 200:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"{label} did not come up in 300 s; see {self.log_path}")

    def stop(self):
        # The server's own process group: MLServer runs its model in worker processes.
        try:
            os.killpg(self.process.pid, 15)
            self.process.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, 9)


def http_get(url) -> int:
    host, port, path = _split(url)
    connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


def http_post_json(url, body: bytes):
    host, port, path = _split(url)
    connection = http.client.HTTPConnection(host, port, timeout=60)
    try:
        connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(f"POST {url}: {response.status} {payload[:300]!r}")
        return json.loads(payload)
    finally:
        connection.close()


def _split(url):
    match = re.match(r"http://([^:/]+):(\d+)(/.*)", url)
    return match.group(1), int(match.group(2)), match.group(3)


def grpc_raw_call(port, method, message: bytes) -> bytes:
    """One unary call with bytes in and out; raises grpc.RpcError on a non-OK status."""
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return channel.unary_unary(method)(message, timeout=60)


def peer_python(args, name) -> str:
    python = Path(args.peers_dir) / name / "venv" / "bin" / "python"
    if not python.exists():
        raise FileNotFoundError(f"{python} is missing: run `bash benchmarks/peers/setup.sh "
                                f"{name}` first")
    return str(python)


# --- one server's measurements -----------------------------------------------------------------

def check_close(label, got: dict, expected: dict):
    for name, value in expected.items():
        got_value = np.asarray(got[name])
        if value.dtype == object:
            np.testing.assert_array_equal(got_value.astype(str), value.astype(str),
                                          err_msg=f"{label}: {name}")
        else:
            np.testing.assert_allclose(got_value.astype(value.dtype), value, rtol=1e-5,
                                       err_msg=f"{label}: {name}")


def measure(label, run_once, concurrencies, args, results):
    for concurrency in concurrencies:
        if args.warmup_seconds:
            run_once(concurrency, args.warmup_seconds)
        stats = summarize([run_once(concurrency, args.seconds)
                           for _ in range(args.repetitions)])
        results.append((label, concurrency, stats))
        print(f"{' / '.join(label)} c={concurrency}: p50 {stats['p50_ms']:.2f} ms, p99 "
              f"{stats['p99_ms']:.2f} ms, {stats['rps']:.0f}/s, {stats['failures']} failed, "
              f"client CPU {stats['client_cpu']:.0%}", flush=True)


def predict_bodies(model_name, signature, row, arrays, file_prefix):
    """(REST body file, gRPC body file, serialized PredictRequest) for one row: the TF
    Serving API bodies wrk and h2load send, written under WORK_DIR."""
    from tensorflow_serving.apis import predict_pb2
    import tensorflow as tf

    rest_body = WORK_DIR / f"{file_prefix}_rest.json"
    rest_body.write_bytes(json.dumps({"signature_name": signature,
                                      "instances": [row]}).encode())
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    for name, value in arrays.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    message = request.SerializeToString()
    grpc_body = WORK_DIR / f"{file_prefix}_grpc.bin"
    grpc_body.write_bytes(b"\0" + len(message).to_bytes(4, "big") + message)
    return rest_body, grpc_body, message


def bench_ours(args, row, arrays, expected, concurrencies, results):
    rest_body, grpc_body, message = predict_bodies(args.model_name, args.signature, row,
                                                   arrays, "ours")

    for batching in args.batching.split(","):
        grpc_port, rest_port = portpicker.pick_unused_port(), portpicker.pick_unused_port()
        command = [sys.executable, "-m", "serving", f"--port={grpc_port}",
                   f"--rest_api_port={rest_port}", f"--model_name={args.model_name}",
                   f"--model_base_path={args.model_base_path}"]
        if batching == "on":
            command.append("--enable_batching")
            if args.batching_parameters_file:
                command.append(f"--batching_parameters_file={args.batching_parameters_file}")
        rest_url = f"http://127.0.0.1:{rest_port}/v1/models/{args.model_name}:predict"
        server = Server(f"our server (batching {batching})", command,
                        f"ours-batching-{batching}",
                        f"http://127.0.0.1:{rest_port}/v1/models/{args.model_name}",
                        env={"PYTHONPATH": str(REPO)})
        try:
            with GrpcClient("127.0.0.1", grpc_port) as client:
                check_close("our gRPC", client.predict(args.model_name, arrays,
                                                       signature_name=args.signature), expected)
            predictions = http_post_json(rest_url, rest_body.read_bytes())["predictions"]
            check_close("our REST", {k: [p[k] for p in predictions] for k in expected},
                        expected)
            response_bytes = len(grpc_raw_call(grpc_port, TF_PREDICT, message)) + 5
            measure(("this server", "REST (TF Serving API)", batching),
                    lambda c, s: wrk_run(rest_url, rest_body, c, s), concurrencies, args,
                    results)
            measure(("this server", "gRPC (TF Serving API)", batching),
                    lambda c, s: h2load_run(f"http://127.0.0.1:{grpc_port}{TF_PREDICT}",
                                            grpc_body, c, s, response_bytes),
                    concurrencies, args, results)
        finally:
            server.stop()


def bench_kserve(args, version_dir, row, expected, concurrencies, results):
    python = peer_python(args, "kserve")
    http_port, grpc_port = portpicker.pick_unused_port(), portpicker.pick_unused_port()
    body = WORK_DIR / "kserve_v1.json"
    body.write_bytes(json.dumps({"instances": [row]}).encode())
    url = f"http://127.0.0.1:{http_port}/v1/models/{args.model_name}:predict"
    server = Server("KServe", [python, str(PEERS_CODE / "kserve_server.py"),
                               f"--model_name={args.model_name}",
                               f"--version_dir={version_dir}", f"--signature={args.signature}",
                               f"--http_port={http_port}", f"--grpc_port={grpc_port}"],
                    "kserve", f"http://127.0.0.1:{http_port}/v1/models/{args.model_name}",
                    cwd=PEERS_CODE)
    try:
        predictions = http_post_json(url, body.read_bytes())["predictions"]
        check_close("KServe", {k: [p[k] for p in predictions] for k in expected}, expected)
        measure((f"KServe {package_version(python, 'kserve')}", "REST (v1)", "-"),
                lambda c, s: wrk_run(url, body, c, s), concurrencies, args, results)
    finally:
        server.stop()


def bench_mlserver(args, version_dir, row, dtypes, expected, concurrencies, results):
    python = peer_python(args, "mlserver")
    ports = {"http_port": portpicker.pick_unused_port(),
             "grpc_port": portpicker.pick_unused_port(),
             "metrics_port": portpicker.pick_unused_port()}
    settings_dir = WORK_DIR / "mlserver"
    spec = WORK_DIR / "mlserver_spec.json"
    spec.write_text(json.dumps({"directory": str(settings_dir), "model_name": args.model_name,
                                "version_dir": str(version_dir), "signature": args.signature,
                                **ports}))
    runtime = str(PEERS_CODE / "mlserver_runtime.py")
    subprocess.run([python, runtime, "settings", f"--spec={spec}"], check=True,
                   cwd=str(PEERS_CODE))
    grpc_body = WORK_DIR / "mlserver_grpc.bin"
    spec.write_text(json.dumps({"path": str(grpc_body), "model_name": args.model_name,
                                "rows": [row], "dtypes": {k: str(v) for k, v in dtypes.items()}}))
    subprocess.run([python, runtime, "grpc-body", f"--spec={spec}"], check=True,
                   cwd=str(PEERS_CODE))
    rest_body = WORK_DIR / "mlserver_v2.json"
    rest_body.write_bytes(json.dumps({"inputs": [
        {"name": name, "shape": [1], "datatype": V2_DATATYPES[str(dtype)], "data": [row[name]]}
        for name, dtype in sorted(dtypes.items())]}).encode())
    base = f"http://127.0.0.1:{ports['http_port']}/v2/models/{args.model_name}"
    server = Server("MLServer", [str(Path(python).parent / "mlserver"), "start",
                                 str(settings_dir)],
                    "mlserver", f"{base}/ready", cwd=PEERS_CODE,
                    env={"PYTHONPATH": str(PEERS_CODE)})
    try:
        outputs = http_post_json(f"{base}/infer", rest_body.read_bytes())["outputs"]
        check_close("MLServer", {o["name"]: np.reshape(o["data"], o["shape"]) for o in outputs},
                    expected)
        message = grpc_body.read_bytes()[5:]
        response_bytes = len(grpc_raw_call(ports["grpc_port"], V2_INFER, message)) + 5
        version = package_version(python, "mlserver")
        measure((f"MLServer {version}", "REST (V2)", "-"),
                lambda c, s: wrk_run(f"{base}/infer", rest_body, c, s), concurrencies, args,
                results)
        measure((f"MLServer {version}", "gRPC (V2)", "-"),
                lambda c, s: h2load_run(f"http://127.0.0.1:{ports['grpc_port']}{V2_INFER}",
                                        grpc_body, c, s, response_bytes),
                concurrencies, args, results)
    finally:
        server.stop()


V2_DATATYPES = {"float32": "FP32", "float64": "FP64", "int64": "INT64", "int32": "INT32",
                "object": "BYTES"}


def package_version(python, package) -> str:
    return subprocess.run([python, "-c", f"import importlib.metadata as m; "
                           f"print(m.version('{package}'))"],
                          capture_output=True, text=True).stdout.strip()


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
            "the end")


def tool_versions() -> str:
    versions = []
    for command in (["wrk", "--version"], ["h2load", "--version"]):
        try:
            output = subprocess.run(command, capture_output=True, text=True)
            first = (output.stdout or output.stderr).strip().splitlines()[0]
            versions.append(" ".join(first.split()[:2]))
        except (OSError, IndexError):
            versions.append(f"{command[0]} (missing)")
    return ", ".join(versions)


def replace_section(path, section: str, lines: list) -> None:
    """Writes `lines` (a "## " heading `section` and its text) over that section of the
    markdown file at path, up to the next "## " heading, or appends them; the rest of the
    file stays as it is. The benchmarks that own one section each write with this."""
    previous = Path(path).read_text(encoding="utf-8") if Path(path).exists() else ""
    start = previous.find(section)
    if start < 0:
        text = previous.rstrip("\n") + "\n\n" + "\n".join(lines)
    else:
        end = previous.find("\n## ", start + len(section))
        text = previous[:start] + "\n".join(lines) + (previous[end:] if end >= 0 else "")
    Path(path).write_text(text, encoding="utf-8")


def write_report(path, args, results, in_process, context):
    baseline = next(iter(in_process.values()))  # the server's own runner

    def cell(stats, concurrency):
        ceiling = baseline[concurrency]
        failures = f" ({stats['failures']} failed)" if stats["failures"] else ""
        cpu = f"{stats['client_cpu']:.0%}" if stats["client_cpu"] is not None else "-"
        return (f"{concurrency} | {stats['p50_ms']:.2f} | {stats['p99_ms']:.2f} | "
                f"{stats['rps']:.0f}{failures} | {stats['p50_ms'] - ceiling['p50_ms']:+.2f} | "
                f"{stats['rps'] / ceiling['rps']:.2f} | {cpu} |")

    lines = [
        "# Model server load benchmark",
        "",
        f"- Date: {context['date']}",
        f"- Machine: {context['machine']}",
        f"- Command: `{context['command']}` (after `bash benchmarks/peers/setup.sh`)",
        f"- Model: `{context['version_dir']}`, signature `{args.signature}`, one row of "
        f"{context['row_source']} per request ({len(context['inputs'])} raw features)",
        f"- Load generators: {context['tools']}; closed loop, one request in flight per "
        "client connection, on the same machine as the server",
        f"- Each cell: median of {args.repetitions} runs of {args.seconds:g} s after a "
        f"{args.warmup_seconds:g} s warm-up; requests/s counts successful requests",
        "- vs in-process: p50 minus the p50 of the server's own session runner called "
        "in-process, and throughput over its throughput, at the same number of clients "
        "(threads for in-process)",
        "- Load generator CPU: its own user+system CPU time over the run's wall time "
        "(100% = one core)",
        "",
        "| server | protocol | batching | clients | p50 ms | p99 ms | requests/s | "
        "p50 vs in-process (ms) | requests/s vs in-process | load generator CPU |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, by_concurrency in in_process.items():
        for concurrency, stats in sorted(by_concurrency.items()):
            lines.append(f"| {label} | - | - | " + cell(stats, concurrency))
    for (server, protocol, batching), concurrency, stats in results:
        lines.append(f"| {server} | {protocol} | {batching} | " + cell(stats, concurrency))
    lines += ["", "## Reading it", ""] + context["notes"]
    # A hand-written "## Findings" section survives a re-run; only the numbers change.
    previous = Path(path).read_text(encoding="utf-8") if Path(path).exists() else ""
    findings = previous[previous.find(FINDINGS):] if FINDINGS in previous else ""
    Path(path).write_text("\n".join(lines) + "\n" + ("\n" + findings if findings else ""),
                          encoding="utf-8")
    return lines


def main(argv=None):
    args = parse_args(argv)
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    load_at_start = _load_average()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    servers = args.servers.split(",")
    version_dir = latest_version_dir(args.model_base_path)
    dtypes = signature_input_dtypes(version_dir, args.signature)
    row, row_source = realistic_row(args.data_glob, dtypes)
    arrays = as_arrays([row], dtypes)
    print(f"model {version_dir}, signature {args.signature}, inputs {sorted(dtypes)}",
          flush=True)

    calls, expected = in_process_calls(version_dir, args.signature, arrays)
    in_process = {label: {} for label in calls}
    for label, call in calls.items():
        for concurrency in concurrencies:
            in_process[label][concurrency] = summarize([
                _threaded_load(call, concurrency, args.seconds, args.warmup_seconds)
                for _ in range(args.repetitions)])
            print(f"{label} c={concurrency}: p50 "
                  f"{in_process[label][concurrency]['p50_ms']:.2f} ms, "
                  f"{in_process[label][concurrency]['rps']:.0f}/s", flush=True)

    results = []
    if "ours" in servers:
        bench_ours(args, row, arrays, expected, concurrencies, results)
    if "kserve" in servers:
        bench_kserve(args, version_dir, row, expected, concurrencies, results)
    if "mlserver" in servers:
        bench_mlserver(args, version_dir, row, dtypes, expected, concurrencies, results)

    context = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_description(load_at_start),
        "command": shlex.join(["python", "benchmarks/serving_bench.py",
                               *(sys.argv[1:] if argv is None else argv)]),
        "version_dir": os.path.relpath(version_dir, REPO),
        "inputs": sorted(dtypes),
        "row_source": row_source,
        "tools": tool_versions(),
        "notes": [
            "- Every server answers the same request, checked against the in-process "
            "outputs before it is timed; the peers run the same TensorFlow and the same "
            "SavedModel signature (benchmarks/peers/), each with its default settings.",
            "- h2load cannot read gRPC statuses: a request whose response carried no full "
            "message is counted as failed (see h2load_run).",
            "- The load generator shares the cores with the server: compare rows with each "
            "other, not with capacity elsewhere.",
        ],
    }
    lines = write_report(args.output, args, results, in_process, context)
    print("\n".join(lines), flush=True)
    print(f"wrote {args.output}", flush=True)


if __name__ == "__main__":
    main()
