"""CPU per request log, outside a load test: what the request path, the sender thread and
the writer process each spend on one REST and one gRPC predict log of the taxi model,
for this checkout and a baseline revision, in one run.

    python benchmarks/request_log_writer_bench.py --baseline=main \
        --model_base_path=outputs/serving_model/taxi_tips

A script, not a test; it starts no server. Two child processes, one importing this
checkout's serving/ and one the baseline's (extracted with git archive), each load the
model once, answer --rows different taxi trips with it, and run the logging code directly:
RequestLogger.log for every call (the request path), _send_queued every --batch logs (the
sender thread's prepare and pickle, into a stand-in pipe), the writer's _Writer.write for
every entry and a flush to files (the writer's per-log path, in the child), and the same
messages through a real writer process (request_log_writer.run, spawned as the server
spawns it; its CPU read from /proc until it reports the logs written). The parent
alternates the children's repetitions, so load from elsewhere on a busy machine hits both
alike, and prints medians of CPU time per log. Both write the same timestamps, so their
logs must be equal (compared serialized deterministically): the parent checks it.
"""
import argparse
import hashlib
import inspect
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ("request path", "sender", "writer", "writer process")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="main",
                        help="git revision to compare with; '' for this checkout alone")
    parser.add_argument("--model_base_path", default=str(REPO / "outputs" / "serving_model"
                                                         / "taxi_tips"))
    parser.add_argument("--model_name", default="taxi_tips")
    parser.add_argument("--signature", default="serving_raw")
    parser.add_argument("--data_glob", default=str(REPO / "data" / "spans" / "*" / "*.csv"))
    parser.add_argument("--logs", type=int, default=3000, help="logs per repetition")
    parser.add_argument("--rows", type=int, default=500,
                        help="distinct CSV rows the calls cycle through")
    parser.add_argument("--batch", type=int, default=400,
                        help="logs a sender's drain hands over (0.1 s at ~4,000 logs/s)")
    parser.add_argument("--repetitions", type=int, default=7)
    parser.add_argument("--profile", action="store_true",
                        help="print a cProfile of this checkout's writer on REST logs")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # the serving root a child imports
    return parser.parse_args(argv)


# --- a child: one revision's logging code, run on demand -------------------------------------

def distinct_rows(data_glob, dtypes, count, bench) -> list:
    """Up to count different complete rows of the CSVs, as serving_bench reads one (a body
    sent over and over would flatter any cache)."""
    import csv
    import glob

    rows, seen = [], set()
    for path in sorted(glob.glob(data_glob)):
        with open(path, newline="", encoding="utf-8") as handle:
            for record in csv.DictReader(handle):
                if all(record.get(name) not in (None, "") for name in dtypes):
                    row = {name: bench._cast(record[name], dtype)
                           for name, dtype in dtypes.items()}
                    key = json.dumps(row, sort_keys=True)
                    if key not in seen:
                        seen.add(key)
                        rows.append(row)
                        if len(rows) == count:
                            return rows
    if not rows:
        sys.exit(f"no complete rows for {sorted(dtypes)} in {data_glob}")
    return rows


class _CapturedPipe:
    """Stands in for the pipe ends: keeps what the sender or writer sends."""

    def __init__(self):
        self.sent = []

    def send_bytes(self, data):
        self.sent.append(data)

    def send(self, message):
        self.sent.append(message)


class _Child:
    def __init__(self, args, work_dir):
        import numpy as np
        import tensorflow as tf
        from google.protobuf import text_format
        from tensorflow_serving.apis import predict_pb2
        from tensorflow_serving.config import model_server_config_pb2

        from serving import json_codec, proto_codec, request_log_writer, request_logging, \
            rest_api
        from serving.servable import Servable

        sys.path.insert(1, str(REPO / "benchmarks"))
        import serving_bench as bench
        # serving_bench put this checkout first on sys.path; a spawned writer process, which
        # inherits sys.path, must import the revision under test too.
        sys.path.insert(0, args.child)

        self.request_logging, self.request_log_writer = request_logging, request_log_writer
        self.rest_api = rest_api
        self.args, self.work_dir = args, Path(work_dir)
        version_dir = bench.latest_version_dir(args.model_base_path)
        self.servable = Servable(args.model_name, int(version_dir.name), str(version_dir))
        dtypes = bench.signature_input_dtypes(version_dir, args.signature)
        rows = distinct_rows(args.data_glob, dtypes, args.rows, bench)
        # One call per row, answered by the model: the REST body serving_bench sends, the
        # gRPC request as its clients send it, the response as grpc_api answers it.
        self.bodies = [json.dumps({"signature_name": args.signature, "instances": [row]})
                       .encode() for row in rows]
        batch = {name: np.concatenate([json_codec.decode_predict_request(
            json_codec.parse_json(body), self.servable.signature_inputs(args.signature))[0][name]
            for body in self.bodies]) for name in dtypes}
        batch_outputs = self.servable.predict(args.signature, batch)
        self.outputs = [{alias: value[index:index + 1] for alias, value in batch_outputs.items()}
                        for index in range(len(rows))]
        # Revisions since 2026-11-27 16:50 UTC hand the logger the response JSON too.
        takes_json = "response_json" in inspect.signature(rest_api._predict_log).parameters
        self.response_jsons = [
            (json_codec.encode_predict_response(outputs, json_codec.ROW),) if takes_json
            else () for outputs in self.outputs]
        self.grpc_requests, self.grpc_responses = [], []
        for row, outputs in zip(rows, self.outputs):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = args.model_name
            request.model_spec.signature_name = args.signature
            for name, value in bench.as_arrays([row], dtypes).items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
            self.grpc_requests.append(request.SerializeToString())
            response = predict_pb2.PredictResponse()
            proto_codec.set_model_spec(response.model_spec, args.model_name,
                                       self.servable.version, args.signature)
            for alias, value in outputs.items():
                proto_codec.fill_tensor_proto(response.outputs[alias], np.asarray(value))
            self.grpc_responses.append(response)
        # The writer process logs under a prefix of its own: it writes after the in-process
        # stages have read theirs, and keeps its files open.
        self.prefixes = {(api, where): str(self.work_dir / where / api / "requests")
                         for api in ("REST", "gRPC") for where in ("here", "process")}
        self.configs = {
            key: text_format.Parse(
                f'model_config_list {{ config {{ name: "{args.model_name}" base_path: "/x" '
                f'logging_config {{ sampling_config {{ sampling_rate: 1.0 }} '
                f'log_collector_config {{ type: "tfrecord" filename_prefix: "{prefix}" }} '
                f'}} }} }}', model_server_config_pb2.ModelServerConfig())
            for key, prefix in self.prefixes.items()}
        self.timestamp = 1.8e9  # one arrival time for every log: files comparable by bytes
        self.writer_process = self.writer_logs = self.writer_reports = None
        self.writer_warm = set()  # the APIs the writer process has built logs of

    def _call_logs(self, api):
        """What the API layer hands RequestLogger.log for each call (but the time)."""
        if api == "REST":
            return [self.rest_api._predict_log(self.args.model_name, None, None,
                                               self.args.signature, self.servable, body,
                                               outputs, *response_json)
                    for body, outputs, response_json in zip(self.bodies, self.outputs,
                                                            self.response_jsons)]
        return [(self.request_logging.PREDICT, self.args.model_name, self.servable.version,
                 self.args.signature, self.request_logging.serialized_protos, request,
                 response)
                for request, response in zip(self.grpc_requests, self.grpc_responses)]

    def run(self, api, logs, profilers=None):
        """-> ({stage: CPU us per log}, sha256 of the logs written in this process).
        profilers: {stage: cProfile.Profile} to run around each stage."""
        profiled = _Stages(profilers)
        config = self.configs[api, "here"]
        logger = self.request_logging.RequestLogger(lambda: config)
        logger._logs = pipe = _CapturedPipe()
        call_logs = self._call_logs(api)
        calls = [call_logs[index % len(call_logs)] for index in range(logs)]
        writer = self.request_log_writer._Writer(_CapturedPipe(), os.getpid(), 1 << 40, 1e9)
        timestamp = self.timestamp

        queueing = sending = 0.0
        for start in range(0, logs, self.args.batch):  # a sender's drain each batch
            started = time.process_time()
            with profiled("request path"):
                for call_log in calls[start:start + self.args.batch]:
                    logger.log(timestamp, *call_log)
            queued = time.process_time()
            with profiled("sender"):
                logger._send_queued()
            sent = time.process_time()
            queueing, sending = queueing + queued - started, sending + sent - queued
        with profiled("writer"):
            self._write(writer, pipe.sent)
        written = time.process_time()

        folder = Path(self.prefixes[api, "here"]).parent
        digest = _content_digest(sorted(folder.glob("*.tfrecord")))
        shutil.rmtree(folder)
        return ({"request path": queueing / logs * 1e6, "sender": sending / logs * 1e6,
                 "writer": (written - sent) / logs * 1e6,
                 "writer process": self._writer_process_cpu(api, calls) / logs * 1e6},
                digest)

    def _writer_process_cpu(self, api, calls) -> float:
        """CPU seconds a real writer process (request_log_writer.run, started as the
        server starts it) spends on the messages, until it reports them written: its whole
        loop, with its interpreter's garbage collection, at the sender's batch size."""
        if self.writer_process is None:
            import multiprocessing

            context = multiprocessing.get_context("spawn")
            logs_out, self.writer_logs = context.Pipe(duplex=False)
            self.writer_reports, reports_in = context.Pipe(duplex=False)
            self.writer_process = context.Process(
                target=self.request_log_writer.run, daemon=True,
                args=(logs_out, reports_in, os.getpid(), 1 << 40, 1e9))
            self.writer_process.start()
            logs_out.close()
            reports_in.close()
        config = self.configs[api, "process"]
        logger = self.request_logging.RequestLogger(lambda: config)
        logger._logs = pipe = _CapturedPipe()
        for start in range(0, len(calls), self.args.batch):
            for call_log in calls[start:start + self.args.batch]:
                logger.log(self.timestamp, *call_log)
            logger._send_queued()
        messages = pipe.sent
        if api not in self.writer_warm:  # its imports and first files, outside the measure
            self.writer_warm.add(api)
            self._written_by_process(messages[:1])
        started = _process_cpu_seconds(self.writer_process.pid)
        self._written_by_process(messages)
        return _process_cpu_seconds(self.writer_process.pid) - started

    def _written_by_process(self, messages):
        expected = sum(len(pickle.loads(message)[2]) for message in messages)
        for message in messages:
            self.writer_logs.send_bytes(message)
        reported = 0
        while reported < expected:  # a report follows each flush (within a second)
            if not self.writer_reports.poll(30):
                sys.exit("the writer process reported nothing for 30 s")
            for _, status, count, _ in self.writer_reports.recv()[1]:
                if status != "OK":
                    sys.exit(f"the writer process reports {count} logs {status}")
                reported += count

    @staticmethod
    def _write(writer, messages):
        for message in messages:  # the writer's loop (request_log_writer.run)
            message = pickle.loads(message)
            writer.active_prefixes = message[1]
            for entry in message[2]:
                writer.write(*entry)
        writer.flush_all(closing=True)

    def profile(self, logs):
        import cProfile
        import pstats

        for api in ("REST", "gRPC"):
            profilers = {stage: cProfile.Profile() for stage in ("sender", "writer")}
            self.run(api, logs, profilers)
            for stage, profiler in profilers.items():
                print(f"--- {api} {stage}, {logs} logs", file=sys.stderr)
                pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(18)


def _process_cpu_seconds(pid) -> float:
    """CPU time of all of a process's threads, in ns precision (schedstat), in seconds."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def _content_digest(paths) -> str:
    """sha256 of the PredictionLogs in the files, each serialized deterministically (map
    entries sorted): the gRPC request's own bytes order its map as protobuf's C++ hash
    map does, which differs between processes."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    digest = hashlib.sha256()
    for path in paths:
        for record in tf.data.TFRecordDataset(str(path)):
            digest.update(prediction_log_pb2.PredictionLog.FromString(
                record.numpy()).SerializeToString(deterministic=True))
    return digest.hexdigest()


class _Stages:
    """with stages(name): profiles the block with profilers[name], if there is one."""

    def __init__(self, profilers):
        self._profilers = profilers or {}
        self._current = None

    def __call__(self, stage):
        self._current = self._profilers.get(stage)
        return self

    def __enter__(self):
        if self._current is not None:
            self._current.enable()

    def __exit__(self, *exc):
        if self._current is not None:
            self._current.disable()


def child_main(args):
    """Answers 'run' lines on stdin with one JSON line of results each."""
    work_dir = tempfile.mkdtemp(prefix="log_writer_bench_")
    try:
        child = _Child(args, work_dir)
        for api in ("REST", "gRPC"):  # warm-up: caches, first files, imports
            child.run(api, min(args.logs, 200))
        print("ready", flush=True)
        for line in sys.stdin:
            if line.strip() == "profile":
                child.profile(args.logs)
                print("{}", flush=True)
                continue
            print(json.dumps({api: child.run(api, args.logs) for api in ("REST", "gRPC")}),
                  flush=True)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


# --- the parent: children for the baseline and this checkout, alternating ----------------------

def start_child(argv, serving_root):
    # One hash seed: the outputs' order (and so the bytes written) must not vary by process.
    env = dict(os.environ, PYTHONPATH=str(serving_root), TF_USE_LEGACY_KERAS="1",
               TF_CPP_MIN_LOG_LEVEL="2", PYTHONHASHSEED="0")
    process = subprocess.Popen(
        [sys.executable, __file__, *argv, f"--child={serving_root}"], env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return process


def wait_ready(process, label):
    for line in process.stdout:
        if line.strip() == "ready":
            return
    sys.exit(f"the {label} child exited before it was ready (code {process.wait()})")


def ask(process, command):
    process.stdin.write(command + "\n")
    process.stdin.flush()
    return json.loads(process.stdout.readline())


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.child:
        sys.path.insert(0, args.child)
        return child_main(args)
    with tempfile.TemporaryDirectory(prefix="log_writer_baseline_") as baseline_root:
        roots = {"this checkout": REPO}
        if args.baseline:
            archive = subprocess.run(["git", "-C", str(REPO), "archive", args.baseline,
                                      "serving"], check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", baseline_root], input=archive, check=True)
            roots = {f"baseline {args.baseline}": Path(baseline_root), **roots}
        children = {label: start_child(argv, root) for label, root in roots.items()}
        try:
            for label, process in children.items():
                wait_ready(process, label)
            if args.profile:
                ask(children["this checkout"], "profile")
            results = {label: [] for label in children}
            for repetition in range(args.repetitions):
                for label, process in children.items():
                    results[label].append(ask(process, "run"))
                print(f"repetition {repetition + 1}/{args.repetitions} done", file=sys.stderr,
                      flush=True)
        finally:
            for process in children.values():
                process.stdin.close()
                process.wait()
    report(args, results)


def report(args, results):
    print(f"CPU us per predict log, median of {args.repetitions} repetitions of {args.logs} "
          f"logs (model {args.model_name}, signature {args.signature}, one row a call, "
          f"{args.rows} different rows, {args.batch} logs a drain):")
    print(f"{'':32}" + "".join(f"{stage:>16}" for stage in STAGES))
    for api in ("REST", "gRPC"):
        for label, runs in results.items():
            print(f"{api + ' ' + label:32}" + "".join(
                f"{statistics.median(run[api][0][stage] for run in runs):16.1f}"
                for stage in STAGES))
    for api in ("REST", "gRPC"):
        distinct = {run[api][1] for runs in results.values() for run in runs}
        print(f"{api} logs: " + ("identical in every run" if len(distinct) == 1 else
                                 f"DIFFER ({len(distinct)} distinct contents)"))


if __name__ == "__main__":
    main()
