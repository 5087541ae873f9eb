"""What request logging costs: REST and gRPC throughput of our server with a logging_config
(sampling_rate 1.0, every call logged, and 0.1) against the same server without one.

    python benchmarks/request_logging_bench.py \
        --model_base_path=outputs/serving_model/taxi_tips --concurrency=8,32

A script, not a test. The servers run at once on loopback ports and the runs alternate
between them (off, 1.0, 0.1, off, ...), so load from elsewhere on the machine hits all alike;
each cell is the median of --repetitions runs. Uses serving_bench.py's load generators (wrk,
h2load) and request bodies, and rewrites the "## Request logging cost" section at the end of
benchmarks/serving_results.md, leaving the rest of the file as it is. The CPU each log costs
the server and the writer process, without a load test: request_log_writer_bench.py.
"""
import argparse
import datetime
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import portpicker

sys.path.insert(0, str(Path(__file__).resolve().parent))

import serving_bench as bench  # noqa: E402  (also puts the repository on sys.path)

SECTION = "## Request logging cost"
LOG_COUNT = re.compile(r':tensorflow:serving:request_log_count\{model_name="[^"]*",'
                       r'status_code="([A-Z_]+)"\} (\d+)')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_base_path", default=str(bench.REPO / "outputs"
                                                         / "serving_model" / "taxi_tips"))
    parser.add_argument("--model_name", default="taxi_tips")
    parser.add_argument("--signature", default="serving_raw")
    parser.add_argument("--data_glob", default=str(bench.REPO / "data" / "spans" / "*"
                                                   / "*.csv"))
    parser.add_argument("--concurrency", default="8,32")
    parser.add_argument("--batching", default="off,on")
    parser.add_argument("--protocols", default="REST,gRPC")
    parser.add_argument("--sampling_rates", default="1.0,0.1")
    parser.add_argument("--gc_freeze", choices=["as_is", "compare"], default="as_is",
                        help="compare: also run the servers without serving.heap's "
                             "gc.freeze() after loading (key RATE+unfrozen)")
    parser.add_argument("--baseline", default="",
                        help="git revision whose serving/ also runs each logging server "
                             "(key RATE@REV), alternating with this checkout's")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup_seconds", type=float, default=1.0)
    parser.add_argument("--output", default=str(bench.REPO / "benchmarks"
                                                / "serving_results.md"))
    return parser.parse_args(argv)


def model_config(args, log_prefix=None, sampling_rate=None) -> str:
    logging_config = ""
    if log_prefix:
        logging_config = (f'    logging_config {{ sampling_config {{ sampling_rate: '
                          f'{sampling_rate} }} '
                          f'log_collector_config {{ type: "tfrecord" '
                          f'filename_prefix: "{log_prefix}" }} }}\n')
    return (f'model_config_list {{\n  config {{\n    name: "{args.model_name}"\n'
            f'    base_path: "{os.path.abspath(args.model_base_path)}"\n'
            f'    model_platform: "tensorflow"\n{logging_config}  }}\n}}\n')


# Runs the server without serving.heap's gc.freeze() after loading, as before it had one:
# every full collection walks what TensorFlow and the loaded model allocated.
UNFROZEN_LAUNCHER = """
import sys
from serving import heap, server
heap.settle = lambda: None
sys.exit(server.main(sys.argv[1:]))
"""


def start_server(args, batching, key, log_dir, baseline_root=None):
    """Our server without a logging_config (key "off") or with one at a sampling rate
    (key "1.0"; "1.0+unfrozen": without gc.freeze() after loading; "1.0@REV": the serving/
    of git revision REV, extracted to baseline_root)."""
    key_without_revision, _, revision = key.partition("@")
    sampling_rate, _, variant = key_without_revision.partition("+")
    name = f"logging-{key}-batching-{batching}"
    log_prefix = None if sampling_rate == "off" else str(log_dir / name / "requests")
    label = ("no logging_config" if log_prefix is None else f"sampling_rate {sampling_rate}") \
        + (", no gc.freeze()" if variant else "") + (f", serving/ of {revision}" if revision
                                                   else "")
    config_path = bench.WORK_DIR / f"{name}.config"
    config_path.write_text(model_config(args, log_prefix, sampling_rate))
    monitoring = bench.WORK_DIR / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true }\n')
    grpc_port, rest_port = portpicker.pick_unused_port(), portpicker.pick_unused_port()
    launcher = ["-c", UNFROZEN_LAUNCHER] if variant == "unfrozen" else ["-m", "serving"]
    command = [sys.executable, *launcher, f"--port={grpc_port}",
               f"--rest_api_port={rest_port}", f"--model_config_file={config_path}",
               f"--monitoring_config_file={monitoring}"]
    if batching == "on":
        command.append("--enable_batching")
    server = bench.Server(label, command, name,
                          f"http://127.0.0.1:{rest_port}/v1/models/{args.model_name}",
                          env={"PYTHONPATH": str(baseline_root if revision else bench.REPO)})
    server.grpc_port, server.rest_port = grpc_port, rest_port
    return server


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid) -> list:
    """/proc/PID/stat's fields after the command name (field 3, the state, first)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid) -> float:
    """User + system CPU of every thread a process has had, exited ones too."""
    try:
        fields = _stat_fields(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def child_pids(pid) -> list:
    """The processes whose parent is pid (the request log writer and multiprocessing's
    resource tracker), from /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat_fields(entry.name)[1]) == pid:
                    children.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                pass
    return children


def log_counts(server) -> dict:
    """{status code: request logs} from the server's Prometheus page."""
    import urllib.request

    url = f"http://127.0.0.1:{server.rest_port}/monitoring/prometheus/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {status: int(count) for status, count in LOG_COUNT.findall(text)}


def run_alternating(args, batching, rest_body, grpc_body, message, results, log_dir,
                    baseline_root=None):
    """All servers up at once; each (protocol, clients) alternates their runs.
    -> {status code: request logs} summed over the logging servers."""
    rates = args.sampling_rates.split(",")
    keys = ["off"] + rates
    if args.gc_freeze == "compare":
        keys += [f"{rate}+unfrozen" for rate in ["off"] + rates]
    if args.baseline:
        keys += [f"{rate}@{args.baseline}" for rate in rates]
    servers = {key: start_server(args, batching, key, log_dir, baseline_root) for key in keys}
    try:
        response_bytes = {}
        for key, server in servers.items():
            rest_url = (f"http://127.0.0.1:{server.rest_port}/v1/models/"
                        f"{args.model_name}:predict")
            bench.http_post_json(rest_url, rest_body.read_bytes())  # answers before timing
            response_bytes[key] = len(bench.grpc_raw_call(server.grpc_port, bench.TF_PREDICT,
                                                          message)) + 5

        def run(key, protocol, concurrency, seconds):
            """One load run -> its figures, with the CPU seconds per 10,000 requests the
            server process and its children (the writer) spent meanwhile, from /proc: on
            a shared machine contention moves throughput, hardly CPU time."""
            server = servers[key]
            children = child_pids(server.process.pid)
            before = (cpu_seconds(server.process.pid),
                      sum(cpu_seconds(pid) for pid in children))
            if protocol == "REST":
                result = bench.wrk_run(f"http://127.0.0.1:{server.rest_port}/v1/models/"
                                       f"{args.model_name}:predict", rest_body, concurrency,
                                       seconds)
            else:
                result = bench.h2load_run(
                    f"http://127.0.0.1:{server.grpc_port}{bench.TF_PREDICT}", grpc_body,
                    concurrency, seconds, response_bytes[key])
            requests = result["rps"] * seconds
            result["server_cpu"] = (cpu_seconds(server.process.pid) - before[0]) \
                / requests * 1e4
            result["writer_cpu"] = (sum(cpu_seconds(pid) for pid in children)
                                    - before[1]) / requests * 1e4
            return result

        for protocol in args.protocols.split(","):
            for concurrency in [int(c) for c in args.concurrency.split(",")]:
                runs = {key: [] for key in servers}
                for key in runs:
                    run(key, protocol, concurrency, args.warmup_seconds)
                for _ in range(args.repetitions):
                    for key in runs:
                        runs[key].append(run(key, protocol, concurrency, args.seconds))
                stats = {key: summarize(value, runs["off"]) for key, value in runs.items()}
                results.append((protocol, batching, concurrency, stats))
                print(f"{protocol} batching {batching} c={concurrency}: " + ", ".join(
                    f"{key} {value['rps']:.0f}/s p50 {value['p50_ms']:.2f} ms "
                    f"({value['rps'] / stats['off']['rps'] - 1:+.1%}; paired "
                    f"{value['paired']:+.1%} [{value['paired_low']:+.1%}, "
                    f"{value['paired_high']:+.1%}]; CPU s/10k server "
                    f"{value['server_cpu']:.2f} writer {value['writer_cpu']:.2f})"
                    for key, value in stats.items()) + f"; load {bench._load_average()}",
                      flush=True)
        counts = {}
        for key, server in servers.items():
            if key != "off":
                for status, count in log_counts(server).items():
                    counts[status] = counts.get(status, 0) + count
        return counts
    finally:
        for server in servers.values():
            server.stop()


def summarize(runs, off_runs) -> dict:
    """serving_bench's medians, the medians of the CPU figures, and the change against
    the run without logging just before each run (runs alternate): its median and the
    quartiles, which show the spread that a median of medians hides."""
    import statistics

    stats = bench.summarize(runs)
    for key in ("server_cpu", "writer_cpu"):
        stats[key] = statistics.median(run[key] for run in runs)
    paired = sorted(run["rps"] / off["rps"] - 1 for run, off in zip(runs, off_runs))
    quartiles = statistics.quantiles(paired, n=4) if len(paired) > 1 else paired * 3
    stats.update(paired=statistics.median(paired), paired_low=quartiles[0],
                 paired_high=quartiles[-1])
    return stats


def write_section(path, args, results, counts, log_bytes, context):
    lines = [
        SECTION,
        "",
        f"- Date: {context['date']}; `{context['command']}`",
        f"- Machine: {context['machine']}",
        f"- Model: `{context['version_dir']}`, signature `{args.signature}`, one row per "
        "request; the same server without a logging_config and with one at each "
        f"sampling_rate ({args.sampling_rates}; 1.0 logs every call"
        + ("; RATE+unfrozen: the same without gc.freeze() after loading" if args.gc_freeze
           == "compare" else "")
        + "), all running, runs alternating between them; each figure the median of "
        f"{args.repetitions} runs of {args.seconds:g} s after a {args.warmup_seconds:g} s "
        "warm-up; the paired change compares each run with the run without logging just "
        "before it; CPU seconds per 10,000 requests from /proc (server process; writer: "
        "its child processes)",
        f"- Load generators: {context['tools']}, closed loop on the same machine",
        f"- Logs written during the runs: {counts.get('OK', 0):,} "
        f"({log_bytes / 1e6:.1f} MB of TFRecord files), dropped on a full queue: "
        f"{counts.get('RESOURCE_EXHAUSTED', 0):,}, failed: {counts.get('INTERNAL', 0):,}",
        "",
    ]
    lines += [
        "| protocol | batching | clients | server | requests/s | change | paired change "
        "[quartiles] | p50 ms | server CPU s / 10k requests | writer CPU s / 10k |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for protocol, batching, concurrency, stats in results:
        off = stats["off"]
        for key, value in stats.items():
            change = (f"{value['rps'] / off['rps'] - 1:+.1%} | {value['paired']:+.1%} "
                      f"[{value['paired_low']:+.1%}, {value['paired_high']:+.1%}]"
                      if key != "off" else "| ")
            lines.append(
                f"| {protocol} | {batching} | {concurrency} | {key} | {value['rps']:.0f} | "
                f"{change} | {value['p50_ms']:.2f} | {value['server_cpu']:.2f} | "
                f"{value['writer_cpu']:.2f} |"
                + (f" ({value['failures']} failed)" if value["failures"] else ""))
    lines += [""] + context["notes"] + [""]
    bench.replace_section(path, SECTION, lines)
    return lines


def main(argv=None):
    args = parse_args(argv)
    bench.WORK_DIR.mkdir(parents=True, exist_ok=True)
    load_at_start = bench._load_average()
    version_dir = bench.latest_version_dir(args.model_base_path)
    dtypes = bench.signature_input_dtypes(version_dir, args.signature)
    row, _ = bench.realistic_row(args.data_glob, dtypes)
    arrays = bench.as_arrays([row], dtypes)
    rest_body, grpc_body, message = bench.predict_bodies(args.model_name, args.signature, row,
                                                         arrays, "logging")
    log_dir = bench.WORK_DIR / "request_logs"
    shutil.rmtree(log_dir, ignore_errors=True)

    results, counts = [], {}
    with tempfile.TemporaryDirectory(prefix="request_logging_baseline_") as baseline_root:
        if args.baseline:  # the revision's serving/ package, beside nothing else
            archive = subprocess.run(["git", "-C", str(bench.REPO), "archive", args.baseline,
                                      "serving"], check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", baseline_root], input=archive, check=True)
        for batching in args.batching.split(","):
            for status, count in run_alternating(args, batching, rest_body, grpc_body,
                                                 message, results, log_dir,
                                                 baseline_root).items():
                counts[status] = counts.get(status, 0) + count
    log_bytes = sum(path.stat().st_size for path in log_dir.rglob("*.tfrecord"))
    context = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": bench.machine_description(load_at_start),
        "command": shlex.join(["python", "benchmarks/request_logging_bench.py",
                               *(sys.argv[1:] if argv is None else argv)]),
        "version_dir": os.path.relpath(version_dir, bench.REPO),
        "tools": bench.tool_versions(),
        "notes": [
            "- The logs are built, serialized and written by a writer process "
            "(multiprocessing 'spawn'), not in the server's interpreter: the server's share "
            "is the sampling and queue append on the request path, and a sender thread "
            "that every 0.1 s pickles what is queued as plain bytes (REST: the request "
            "body and the response JSON as sent; gRPC: request and response bytes) and "
            "writes it to a pipe, a few us a log. The writer process's CPU still comes out of the "
            "machine's two cores: ~30 us a REST log (orjson reads the body and the "
            "response again and their values go straight into the wire format; the codec "
            "only for bodies that path does not cover) and ~7 us a gRPC log, whose bytes "
            "it only wraps; `benchmarks/request_log_writer_bench.py` measures each part "
            "per log without a load test.",
        ],
    }
    lines = write_section(args.output, args, results, counts, log_bytes, context)
    print("\n".join(lines), flush=True)
    print(f"wrote the {SECTION!r} section of {args.output}", flush=True)


if __name__ == "__main__":
    main()
