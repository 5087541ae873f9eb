"""The transports' floor: what grpcio (sync and aio) and uvicorn cost per request when the
handler does no work at all, measured with the same load generators as serving_bench.py.

    python benchmarks/transport_floor.py                  # 1 and 32 clients, median of 3
    python benchmarks/transport_floor.py --concurrency=1,8,32 --no_write

Each server runs in its own subprocess on loopback and answers the Predict path with a
fixed payload built once: grpcio's sync server and grpc.aio with a generic handler and
identity (de)serializers (bytes in, the prebuilt serialized PredictResponse out), uvicorn
(httptools, uvloop) with a raw ASGI app returning a fixed JSON body. No TensorFlow runs
while measuring. If grpcio's floor is above uvicorn's by more than the model's cost, no
work inside the handler can make gRPC as fast as REST. Rewrites the section
"## Transport floor (no model)" of benchmarks/serving_results.md, keeping the rest.
"""
import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

import portpicker

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serving_bench as bench  # noqa: E402  (its load generators and Server wrapper)

SECTION = "## Transport floor (no model)"
# The taxi model's answer to one row, in both protocols' shapes (about the same bytes).
REST_RESPONSE = (b'{"predictions": [{"tips_probability": 0.123456789, '
                 b'"tips_logit": -1.96, "big_tip": 0}]}')

# The servers, each a `python -c` program; {port} and {health_port} are filled in.
_GRPC_COMMON = """
import sys, grpc
from tensorflow_serving.apis import predict_pb2
response = predict_pb2.PredictResponse()
response.model_spec.name = "taxi_tips"
response.model_spec.version.value = 1
response.model_spec.signature_name = "serving_raw"
for name in ("tips_probability", "tips_logit"):
    tensor = response.outputs[name]
    tensor.dtype = 1
    tensor.tensor_shape.dim.add().size = 1
    tensor.tensor_shape.dim.add().size = 1
    tensor.float_val.append(0.123456789)
PAYLOAD = response.SerializeToString()
METHOD = "/tensorflow.serving.PredictionService/Predict"
identity = lambda data: data
"""

GRPC_SYNC = _GRPC_COMMON + """
import concurrent.futures
def predict(request, context):
    return PAYLOAD
handler = grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService", {
    "Predict": grpc.unary_unary_rpc_method_handler(
        predict, request_deserializer=identity, response_serializer=identity)})
# The server's own settings (serving/server.py): a pool of --grpc_max_threads (default 16).
server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=16),
                     handlers=[handler], options=[("grpc.so_reuseport", 0)])
server.add_insecure_port("127.0.0.1:{port}")
server.start()
""" + """
import http.server, threading
class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", {health_port}), Ok).serve_forever()
"""

GRPC_AIO = _GRPC_COMMON + """
import asyncio, http.server, threading
class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers()
    def log_message(self, *args):
        pass
threading.Thread(target=http.server.HTTPServer(("127.0.0.1", {health_port}), Ok).serve_forever,
                 daemon=True).start()
async def predict(request, context):
    return PAYLOAD
async def main():
    handler = grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService", {
        "Predict": grpc.unary_unary_rpc_method_handler(
            predict, request_deserializer=identity, response_serializer=identity)})
    server = grpc.aio.server(handlers=[handler], options=[("grpc.so_reuseport", 0)])
    server.add_insecure_port("127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()
asyncio.run(main())
"""

UVICORN = """
import uvicorn
BODY = %r
HEADERS = [(b"content-length", str(len(BODY)).encode()), (b"content-type", b"application/json")]
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
uvicorn.run(app, host="127.0.0.1", port={port}, loop="uvloop", http="httptools", ws="none",
            lifespan="off", access_log=False, log_level="warning", server_header=False)
""" % REST_RESPONSE


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="measured time per run")
    parser.add_argument("--warmup_seconds", type=float, default=1.0)
    parser.add_argument("--output", default=str(bench.REPO / "benchmarks" / "serving_results.md"))
    parser.add_argument("--no_write", action="store_true", help="print the table only")
    return parser.parse_args(argv)


def _fill(template: str, **values) -> str:
    for key, value in values.items():
        template = template.replace("{" + key + "}", str(value))
    return template


def predict_request_body(path: Path) -> Path:
    """The same one-row PredictRequest shape serving_bench sends, length-prefixed."""
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "taxi_tips"
    request.model_spec.signature_name = "serving_raw"
    for index in range(14):  # 14 raw features, one value each
        tensor = request.inputs[f"feature_{index}"]
        tensor.dtype = 1
        tensor.tensor_shape.dim.add().size = 1
        tensor.tensor_shape.dim.add().size = 1
        tensor.float_val.append(float(index))
    message = request.SerializeToString()
    path.write_bytes(b"\0" + len(message).to_bytes(4, "big") + message)
    return path


def run_floor(args):
    bench.WORK_DIR.mkdir(parents=True, exist_ok=True)
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    grpc_body = predict_request_body(bench.WORK_DIR / "floor_grpc.bin")
    rest_body = bench.WORK_DIR / "floor_rest.json"
    rest_body.write_bytes(b'{"signature_name": "serving_raw", "instances": [{"a": 1.0}]}')
    results = []  # (transport, clients, stats)
    for label, template, protocol in (
            ("grpcio sync server (16 threads)", GRPC_SYNC, "grpc"),
            ("grpcio aio server", GRPC_AIO, "grpc"),
            ("uvicorn (httptools, uvloop), raw ASGI", UVICORN, "rest")):
        port, health_port = portpicker.pick_unused_port(), portpicker.pick_unused_port()
        ready_port = health_port if protocol == "grpc" else port
        program = _fill(template, port=port, health_port=health_port)
        server = bench.Server(label, [sys.executable, "-c", program],
                              "floor-" + label.split()[0] + "-" + label.split()[1],
                              f"http://127.0.0.1:{ready_port}/")
        try:
            if protocol == "grpc":
                payload = bench.grpc_raw_call(port, bench.TF_PREDICT,
                                              grpc_body.read_bytes()[5:])
                url = f"http://127.0.0.1:{port}{bench.TF_PREDICT}"

                def run_once(c, s, url=url, size=len(payload) + 5):
                    return bench.h2load_run(url, grpc_body, c, s, size)
            else:
                url = f"http://127.0.0.1:{port}/v1/models/taxi_tips:predict"

                def run_once(c, s, url=url):
                    return bench.wrk_run(url, rest_body, c, s)
            for concurrency in concurrencies:
                if args.warmup_seconds:
                    run_once(concurrency, args.warmup_seconds)
                stats = bench.summarize([run_once(concurrency, args.seconds)
                                         for _ in range(args.repetitions)])
                results.append((label, concurrency, stats))
                print(f"{label} c={concurrency}: p50 {stats['p50_ms']:.3f} ms, "
                      f"{stats['rps']:.0f}/s, {stats['failures']} failed", flush=True)
        finally:
            server.stop()
    return results


def report(args, results) -> list:
    lines = [
        SECTION, "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; `"
        + shlex.join(["python", "benchmarks/transport_floor.py", *sys.argv[1:]]) + "`",
        "- Each server returns a fixed payload without running anything (grpcio: a generic "
        "handler with identity (de)serializers and a prebuilt serialized PredictResponse; "
        "uvicorn: a raw ASGI app and a fixed JSON body); the table's load generators; gRPC "
        "sends a one-row PredictRequest of 14 inputs, REST a small JSON body; median of "
        f"{args.repetitions} runs of {args.seconds:g} s "
        f"after {args.warmup_seconds:g} s of warm-up. Machine load: {bench._load_average()}.",
        "",
        "| transport | clients | p50 ms | p99 ms | requests/s | failed |",
        "|---|---|---|---|---|---|",
    ]
    for label, concurrency, stats in results:
        lines.append(f"| {label} | {concurrency} | {stats['p50_ms']:.3f} | "
                     f"{stats['p99_ms']:.3f} | {stats['rps']:.0f} | {stats['failures']} |")
    return lines


def write_section(path: Path, lines: list):
    """Replaces the section (up to the next "## ") or appends it; the rest stays."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    block = "\n".join(lines) + "\n"
    start = text.find(SECTION)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + block
    else:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + block + (text[end:] if end >= 0 else "")
    path.write_text(text, encoding="utf-8")


def main(argv=None):
    args = parse_args(argv)
    results = run_floor(args)
    lines = report(args, results)
    print("\n".join(lines), flush=True)
    if not args.no_write:
        write_section(Path(args.output), lines)
        print(f"wrote {args.output}", flush=True)


if __name__ == "__main__":
    main()
