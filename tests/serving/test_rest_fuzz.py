"""Malformed requests over raw sockets: the REST server answers each with a 4xx in TF
Serving's JSON, never a 5xx, never drops a well-framed request, and stays up and bounded.

Bounded for CI: loopback only, a fixed seed, about 2,000 requests, well under a minute.
"""
import json
import os
import random
import re
import socket
import time

import pytest

from tests.serving.conftest import make_model_base, start_server

SEED = 8
READ_TIMEOUT_MS = 1000
MAX_BODY_BYTES = 1024 * 1024
METRICS_PATH = "/monitoring/prometheus/metrics"
PREDICT = "/v1/models/half_plus_two:predict"
VALID_BODY = b'{"instances": [1.0, 2.0, 5.0]}'
VALID_PREDICTIONS = [2.5, 3.0, 4.5]


@pytest.fixture(scope="module")
def server(saved_models, module_tmp):
    config = module_tmp / "models.config"
    config.write_text(
        "model_config_list {\n"
        f'  config {{ name: "half_plus_two" model_platform: "tensorflow" base_path: '
        f'"{make_model_base(module_tmp / "hpt", {1: saved_models["half_plus_two"]})}" }}\n'
        f'  config {{ name: "multi_io" model_platform: "tensorflow" base_path: '
        f'"{make_model_base(module_tmp / "mio", {1: saved_models["multi_io"]})}" }}\n'
        "}\n")
    monitoring = module_tmp / "monitoring.config"
    monitoring.write_text(f'prometheus_config {{ enable: true path: "{METRICS_PATH}" }}\n')
    server = start_server(f"--model_config_file={config}",
                          f"--monitoring_config_file={monitoring}",
                          f"--rest_api_read_timeout_in_ms={READ_TIMEOUT_MS}",
                          f"--rest_api_max_request_body_bytes={MAX_BODY_BYTES}",
                          tmp_dir=module_tmp)
    yield server
    server.stop()


# --- a raw HTTP/1.1 client: what came back, byte for byte ---------------------------------
class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)


def read_response(sock, buffer=b"", timeout=10.0):
    """-> (Response or None if the connection ended first, the bytes left over)."""
    sock.settimeout(timeout)
    while b"\r\n\r\n" not in buffer:
        chunk = _recv(sock)
        if not chunk:
            return None, buffer
        buffer += chunk
    head, buffer = buffer.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    match = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    assert match, f"not an HTTP/1.x status line: {lines[0]!r}"
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(buffer) < length:
        chunk = _recv(sock)
        if not chunk:
            return None, buffer
        buffer += chunk
    return Response(int(match.group(1)), headers, buffer[:length]), buffer[length:]


def _recv(sock):
    try:
        return sock.recv(65536)
    except (ConnectionResetError, socket.timeout):
        return b""


def connect(server):
    sock = socket.create_connection(("127.0.0.1", server.rest_port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def exchange(server, raw: bytes, timeout=10.0, check_closed=False):
    """Sends raw bytes on a fresh connection; -> (first response or None, whether the server
    closed the connection after it: only looked at with check_closed)."""
    with connect(server) as sock:
        try:
            sock.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may refuse before reading everything
        response, rest = read_response(sock, timeout=timeout)
        closed = check_closed and response is not None and _closed(sock, rest)
        return response, closed


def _closed(sock, rest, timeout=READ_TIMEOUT_MS / 1000 * 3):
    """True when the server closes the connection (within the read timeout and some)."""
    if rest:
        return False
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def post(path, body: bytes, extra_headers=b""):
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n" + extra_headers +
            b"\r\n" + body)


def assert_json_client_error(response, request=b""):
    assert response is not None, f"no response to {request[:200]!r}"
    assert 400 <= response.status < 500, (response.status, response.body[:300], request[:300])
    assert response.headers.get("content-type") == "application/json", response.headers
    assert set(response.json()) == {"error"}


# --- framing ----------------------------------------------------------------------------
@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET /v1/models/half_plus_two HTTP/1.1\r\nNo colon here\r\n\r\n",
    b"\x00\x01\x02\xff\xfe\r\n\r\n",
    b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nContent-Length: abc\r\n\r\n" + VALID_BODY,
    b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nContent-Length: -1\r\n\r\n" + VALID_BODY,
    b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
    b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"fffffffffffffffffffff\r\n",
], ids=["garbage", "no-path", "header-without-colon", "binary",
        "content-length-text", "content-length-negative", "content-length-overflow",
        "content-length-twice", "chunk-size-text", "chunk-size-overflow"])
def test_malformed_framing_gets_json_400_and_close(server, raw):
    response, closed = exchange(server, raw, check_closed=True)
    assert_json_client_error(response, raw)
    assert response.status == 400
    assert closed


def test_old_http_versions_get_http_1_answers(server):
    # The stdlib server answered these with a bare HTTP/0.9 body and no status line.
    for version in (b"", b" HTTP/0.9", b" HTTP/1.0"):
        response, _ = exchange(server, b"GET /v1/models/nope" + version + b"\r\n\r\n")
        assert_json_client_error(response)
        assert response.status == 404


def test_body_over_the_limit_is_refused_before_it_is_read(server):
    raw = (b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nContent-Length: 1099511627776\r\n\r\n"
           + VALID_BODY)
    response, closed = exchange(server, raw, check_closed=True)
    assert_json_client_error(response, raw)
    assert response.status == 413
    assert "--rest_api_max_request_body_bytes" in response.json()["error"]
    assert closed


def test_chunked_body_over_the_limit_is_refused(server):
    chunk = b"x" * 65536
    raw = (b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
           + (b"10000\r\n" + chunk + b"\r\n") * (MAX_BODY_BYTES // len(chunk) + 1))
    response, closed = exchange(server, raw, check_closed=True)
    assert response.status == 413 and closed


def test_chunked_body_is_decoded(server):
    raw = (b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
           + b"5\r\n" + VALID_BODY[:5] + b"\r\n" + b"%x\r\n" % (len(VALID_BODY) - 5)
           + VALID_BODY[5:] + b"\r\n0\r\n\r\n")
    response, _ = exchange(server, raw)
    assert (response.status, response.json()) == (200, {"predictions": VALID_PREDICTIONS})


def test_huge_headers_are_refused(server):
    raw = b"GET /v1/models/half_plus_two HTTP/1.1\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"
    response, closed = exchange(server, raw, check_closed=True)
    assert_json_client_error(response)
    assert response.status == 431 and closed


def test_short_body_is_never_predicted_on(server):
    raw = b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nContent-Length: 100\r\n\r\n" + VALID_BODY
    started = time.monotonic()
    response, closed = exchange(server, raw, check_closed=True)
    assert_json_client_error(response)
    assert response.status == 408 and closed
    assert time.monotonic() - started < READ_TIMEOUT_MS / 1000 + 5


def test_framing_error_does_not_run_the_body_as_a_second_request(server):
    smuggled = b"GET /v1/models/half_plus_two HTTP/1.1\r\nHost: x\r\n\r\n"
    raw = (b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nContent-Length: 5x\r\n\r\n" + smuggled)
    with connect(server) as sock:
        sock.sendall(raw)
        response, rest = read_response(sock)
        assert response.status == 400
        assert _closed(sock, rest)


def test_slow_headers_are_cut_off(server):
    with connect(server) as sock:
        started = time.monotonic()
        header = b"GET /v1/models/half_plus_two HTTP/1.1\r\nX-Slow: " + b"a" * 1000
        try:
            for byte in header:
                sock.sendall(bytes([byte]))
                time.sleep(0.05)
                if time.monotonic() - started > 10:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        response, _ = read_response(sock, timeout=5)
        assert response is None or response.status == 408
        assert time.monotonic() - started < READ_TIMEOUT_MS / 1000 + 5


def test_idle_keep_alive_connection_is_closed(server):
    with connect(server) as sock:
        sock.sendall(b"GET /v1/models/half_plus_two HTTP/1.1\r\nHost: x\r\n\r\n")
        response, rest = read_response(sock)
        assert response.status == 200
        started = time.monotonic()
        assert _closed(sock, rest)
        assert time.monotonic() - started < READ_TIMEOUT_MS / 1000 + 2


# --- JSON bodies ------------------------------------------------------------------------
HOSTILE_BODIES = {
    "5000-digit integer": b'{"instances": [' + b"9" * 5000 + b"]}",
    "5000-digit negative integer": b'{"instances": [-' + b"9" * 5000 + b"]}",
    "huge exponent": b'{"instances": [1e999]}',
    "lone high surrogate": b'{"instances": ["\\ud800"]}',
    "lone low surrogate": b'{"instances": ["\\udc00x"]}',
    "lone surrogate in a key": b'{"\\ud800": 1, "instances": [1.0]}',
    "lone surrogate in a signature name": b'{"signature_name": "\\udfff", "instances": [1.0]}',
    "surrogate echoed in an error": b'{"instances": [{"\\ud834": 1}]}',
    "nested 33 deep": b'{"instances": ' + b"[" * 33 + b"1.0" + b"]" * 33 + b"}",
    "nested 1000 deep": b'{"instances": ' + b"[" * 1000 + b"1.0" + b"]" * 1000 + b"}",
    "nested 100000 deep": b'{"instances": ' + b"[" * 100000 + b"]" * 100000 + b"}",
    "objects nested deep": b'{"instances": [' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"]}",
    "NaN": b'{"instances": [NaN]}',
    "Infinity": b'{"instances": [Infinity, -Infinity]}',
    "string for float": b'{"instances": ["x"]}',
    "object for float": b'{"instances": [{"x": {"y": 1}}]}',
    "null": b'{"instances": null}',
    "top-level array": b"[1, 2]",
    "top-level string": b'"x"',
    "empty": b"",
    "whitespace": b"   ",
    "invalid utf-8": b'{"instances": ["\xff\xfe"]}',
    "nul byte": b'{"instances": [1.0]}\x00',
    "truncated": VALID_BODY[:-3],
    "both inputs and instances": b'{"inputs": [1.0], "instances": [1.0]}',
    "signature not a string": b'{"signature_name": 5, "instances": [1.0]}',
    "bad b64": b'{"instances": [{"b64": "!!!"}]}',
    "ragged": b'{"inputs": [[1.0], [1.0, 2.0]]}',
    # Both keys: the error echoes the whole document, pretty-printed.
    "wide document echoed": b'{"inputs": 1, "instances": [' + b",".join([b"[1]"] * 3000)
    + b"]}",
    "deep document echoed": b'{"inputs": 1, "instances": ' + b"[" * 500 + b"]" * 500 + b"}",
    "deep objects echoed": b'{"inputs": 1, "instances": [' + b'{"a":' * 500 + b"1"
    + b"}" * 500 + b"]}",
    "long string echoed": b'{"inputs": 1, "instances": ["' + b"s" * 100000 + b'"]}',
}


# rapidjson, as TF Serving configures it, parses these; a float input takes them.
ACCEPTED_BY_TF_SERVING = {"NaN", "Infinity"}


@pytest.mark.parametrize("name", sorted(HOSTILE_BODIES))
def test_hostile_json_gets_a_bounded_json_400(server, name):
    body = HOSTILE_BODIES[name]
    for path in (PREDICT, "/v1/models/multi_io:predict",
                 "/v1/models/half_plus_two:classify", "/v1/models/half_plus_two:regress"):
        response, _ = exchange(server, post(path, body))
        if name in ACCEPTED_BY_TF_SERVING and response.status == 200:
            continue
        assert_json_client_error(response, body)
        # An error says what was wrong; it does not grow with the nesting of the request.
        assert len(response.body) <= max(4 * len(body), 8192), (path, len(response.body))
        response.body.decode("utf-8")  # well-formed UTF-8, whatever the request held


def _mutations(rng, count):
    """Valid predict bodies with random damage: flipped bytes, cut and duplicated spans,
    and JSON tokens that parse but do not fit."""
    tokens = [b"[", b"]", b"{", b"}", b",", b":", b'"', b"\\", b"1e999", b"NaN", b"-",
              b"9" * 400, b"null", b"true", b'"\\ud800"', b'{"b64": "AA=="}', b"\xff", b"0x1"]
    bases = [VALID_BODY, b'{"inputs": [[1.0], [2.0]]}', b'{"signature_name": "serving_default",'
             b' "instances": [{"x": 1.0}]}', b'{"examples": [{"x": 1.0}], "context": {"y": 2}}',
             b'{"instances": [{"a": [1, 2], "b": "s", "c": {"b64": "AAE="}}]}']
    for _ in range(count):
        body = bytearray(rng.choice(bases))
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(len(body) + 1)
            action = rng.random()
            if action < 0.3 and body:
                body[min(position, len(body) - 1)] = rng.randrange(256)
            elif action < 0.5:
                del body[position:position + rng.randint(1, 8)]
            elif action < 0.7:
                span = body[position:position + rng.randint(1, 16)]
                body[position:position] = span * rng.randint(1, 50)
            else:
                body[position:position] = rng.choice(tokens)
        yield bytes(body)


def test_mutated_bodies_on_keep_alive_connections(server):
    rng = random.Random(SEED)
    paths = ["/v1/models/half_plus_two:predict", "/v1/models/multi_io:predict",
             "/v1/models/half_plus_two:classify", "/v1/models/half_plus_two:regress",
             "/v1/models/multi_io/versions/1:predict"]
    statuses = {}
    sock, buffer = connect(server), b""
    try:
        for index, body in enumerate(_mutations(rng, 1500)):
            if index % 50 == 0:  # new connections now and then, as clients do
                sock.close()
                sock, buffer = connect(server), b""
            request = post(rng.choice(paths), body)
            sock.sendall(request)
            response, buffer = read_response(sock, buffer)
            assert response is not None, f"dropped: {request[:300]!r}"
            assert response.status < 500, (response.status, response.body[:300], request[:300])
            assert "error" in response.json() or response.status == 200
            statuses[response.status] = statuses.get(response.status, 0) + 1
    finally:
        sock.close()
    assert statuses.get(400, 0) > 500  # the mutations did reach the codec


# --- afterwards -------------------------------------------------------------------------
def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def test_unknown_model_names_do_not_grow_metrics(server):
    for index in range(300):
        response, _ = exchange(server, post(f"/v1/models/nope{index}:predict", VALID_BODY))
        assert response.status == 404
    response, _ = exchange(server, b"GET " + METRICS_PATH.encode() + b" HTTP/1.1\r\n\r\n")
    series = [line for line in response.body.decode().splitlines()
              if line and not line.startswith("#")]
    assert not any("nope" in line for line in series)
    assert len(series) < 1000


def test_server_alive_bounded_and_correct_after_the_fuzzing(server):
    # Runs last in this module: everything above has been thrown at the same process.
    assert server.process.poll() is None
    before = rss_kib(server.process.pid)
    rng = random.Random(SEED + 1)
    for body in _mutations(rng, 300):
        response, _ = exchange(server, post(PREDICT, body))
        assert response is not None and response.status < 500
    for raw in (b"GARBAGE\r\n\r\n", HOSTILE_BODIES["nested 100000 deep"],
                HOSTILE_BODIES["5000-digit integer"]) * 20:
        exchange(server, raw if raw.startswith(b"GARB") else post(PREDICT, raw))
    # A second round of the same abuse must not cost memory: nothing is kept per request.
    assert rss_kib(server.process.pid) - before < 64 * 1024
    response, _ = exchange(server, post(PREDICT, VALID_BODY))
    assert (response.status, response.json()) == (200, {"predictions": VALID_PREDICTIONS})
    assert server.process.poll() is None
    assert os.path.exists(f"/proc/{server.process.pid}")
