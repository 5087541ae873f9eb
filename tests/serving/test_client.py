"""serving.client against a running server: the REST and gRPC clients give the same
answers and raise ServingRequestError with the server's own text.

`python -m serving.client` prints JSON; a user's mistake is one line on stderr (exit 2 for
the command line, 1 for a failed request) and never a traceback.
"""
import http.server
import json
import os
import subprocess
import threading

import numpy as np
import pytest

from serving.client import GrpcClient, RestClient, ServingRequestError
import portpicker

from tests.serving.conftest import PYTHON, REPO


@pytest.fixture(scope="module")
def rest(models_server):
    with RestClient("127.0.0.1", models_server.rest_port) as client:
        yield client


@pytest.fixture(scope="module")
def grpc_client(models_server):
    with GrpcClient("127.0.0.1", models_server.grpc_port) as client:
        yield client


def test_status_is_the_same_over_both_transports(rest, grpc_client):
    expected = [{"version": "1", "state": "AVAILABLE",
                 "status": {"error_code": "OK", "error_message": ""}}]
    assert rest.status("half_plus_two") == expected
    assert grpc_client.status("half_plus_two") == expected
    assert rest.wait_until_available("half_plus_two", timeout=5) == expected
    assert grpc_client.wait_until_available("half_plus_two", timeout=5) == expected


def test_predict(rest, grpc_client):
    assert rest.predict("half_plus_two", instances=[1.0, 2.0]) == [2.5, 3.0]
    assert rest.predict("half_plus_two", inputs={"x": [1.0]}, version=1) == [2.5]
    outputs = grpc_client.predict("half_plus_two", {"x": np.array([1.0, 2.0], np.float32)})
    assert list(outputs) == ["y"]
    np.testing.assert_array_equal(outputs["y"], np.array([2.5, 3.0], np.float32))


def test_predict_strings_and_bytes(rest, grpc_client):
    row = {"a": 1.0, "b": 4, "text": "abc", "image_bytes": b"\x00\x01"}
    [prediction] = rest.predict("multi_io", instances=[row])
    assert prediction["text_upper"] == "ABC"
    assert prediction["echo_bytes"] == {"b64": "AAE="}
    outputs = grpc_client.predict(
        "multi_io", {"a": np.array([1.0], np.float32), "b": np.array([4], np.int64),
                     "text": np.array([b"abc"], object), "image_bytes": np.array([b"\x00\x01"],
                                                                                 object)},
        output_filter=["ratio", "echo_bytes"])
    assert sorted(outputs) == ["echo_bytes", "ratio"]
    assert list(outputs["echo_bytes"]) == [b"\x00\x01"] and list(outputs["ratio"]) == [0.25]


def test_classify_and_regress_agree(rest, grpc_client):
    examples = [{"x": -2.0}, {"x": 1.0}]
    for client in (rest, grpc_client):
        assert client.classify("half_plus_two", examples,
                               signature_name="classify_with_classes") == [
            [["low", 0.0], ["high", 1.0]], [["low", -1.5], ["high", 2.5]]]
        assert client.regress("half_plus_two", [{"other": 1.0}, {"x": 4.0}], context={"x": 2.0},
                              signature_name="regress_x_to_y") == [3.0, 4.0]


def test_metadata(rest, grpc_client):
    rest_metadata = rest.metadata("half_plus_two")
    assert rest_metadata["model_spec"]["name"] == "half_plus_two"
    assert "serving_default" in rest_metadata["metadata"]["signature_def"]["signature_def"]
    signatures = grpc_client.metadata("half_plus_two", version=1)
    assert signatures["serving_default"].outputs["y"].name
    assert set(signatures) == set(rest_metadata["metadata"]["signature_def"]["signature_def"])


def test_errors_carry_the_servers_text(rest, grpc_client):
    with pytest.raises(ServingRequestError) as raised:
        rest.predict("nope", instances=[1.0])
    assert (raised.value.http_status, raised.value.message) == (
        404, "Servable not found for request: Latest(nope)")
    with pytest.raises(ServingRequestError) as raised:
        grpc_client.predict("half_plus_two", {"x": np.array([1.0], np.float32)}, version=9)
    assert (raised.value.code, raised.value.message) == (
        "NOT_FOUND", "Servable not found for request: Specific(half_plus_two, 9)")
    with pytest.raises(ServingRequestError) as raised:
        grpc_client.predict("half_plus_two", {"x": np.array([1.0], np.float32)}, label="nope")
    assert (raised.value.code, raised.value.message) == (
        "INVALID_ARGUMENT", "Unrecognized servable version label: nope")


def test_wait_until_available_times_out_with_a_clear_message(rest):
    with pytest.raises(TimeoutError, match="model 'nope' had no AVAILABLE version after 1s"):
        rest.wait_until_available("nope", timeout=1, interval=0.2)


def test_grpc_lists_take_the_signatures_dtypes(grpc_client):
    # Python lists are typed from the signature (int64, strings); arrays are sent as given.
    outputs = grpc_client.predict("multi_io", {"a": [1.0], "b": [4], "text": ["abc"],
                                               "image_bytes": [b"\x00"]},
                                  output_filter=["sum", "text_upper"])
    assert list(outputs["sum"]) == [5.0] and list(outputs["text_upper"]) == [b"ABC"]
    with pytest.raises(ServingRequestError) as raised:
        grpc_client.predict("multi_io", {"a": np.array([1.0]), "b": [4], "text": ["abc"],
                                         "image_bytes": [b"\x00"]})
    assert (raised.value.code, raised.value.message) == (
        "INVALID_ARGUMENT", "Expects arg[0] to be float but double is provided")


# --- the command line -------------------------------------------------------------------

PROG = "python -m serving.client"


def run_cli(*args, stdin=None, stdout=subprocess.PIPE, cwd=REPO):
    return subprocess.run([PYTHON, "-m", "serving.client", *args], cwd=str(cwd), input=stdin,
                          stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=60)


def one_error_line(result) -> str:
    """The single `python -m serving.client: error: ...` line the CLI printed."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{PROG}: error: "), lines[0]
    return lines[0][len(f"{PROG}: error: "):]


@pytest.fixture(scope="module")
def at(models_server):
    """The flags that point the CLI at the shared server."""
    return ["--host", "127.0.0.1", f"--rest_api_port={models_server.rest_port}"]


def test_cli_predict_and_status(at):
    result = run_cli("predict", "--model", "half_plus_two", *at,
                     "--json", '{"instances": [1.0, 5.0]}')
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"predictions": [2.5, 4.5]}
    result = run_cli("status", "--model", "half_plus_two", *at)
    assert json.loads(result.stdout)["model_version_status"][0]["state"] == "AVAILABLE"


def test_cli_reads_the_body_from_a_file_or_stdin_and_takes_instances(at, tmp_path):
    (tmp_path / "request.json").write_text('{"instances": [1.0, 3.0]}')
    result = run_cli("predict", "--model", "half_plus_two", *at, "--json", "@request.json",
                     cwd=tmp_path)
    assert (result.returncode, json.loads(result.stdout)) == (0, {"predictions": [2.5, 3.5]})
    result = run_cli("predict", "--model", "half_plus_two", *at, "--json", "@-",
                     stdin='{"instances": [7.0]}')
    assert (result.returncode, json.loads(result.stdout)) == (0, {"predictions": [5.5]})
    result = run_cli("predict", "--model", "half_plus_two", *at, "--instances", "[1.0]",
                     "--signature_name", "serving_default")
    assert (result.returncode, json.loads(result.stdout)) == (0, {"predictions": [2.5]})


@pytest.mark.parametrize("args, message", [
    (["predict", "--json", '{"instances": [1.0 5.0]}'],
     "--json is not valid JSON: Expecting ',' delimiter at line 1 column 20, here: "
     '{"instances": [1.0 >>>5.0]}'),
    # What the shell passes for --json "{"instances": [1.0]}": its double quotes are gone.
    (["predict", "--json", "{instances: [1.0]}"],
     "--json is not valid JSON: Expecting property name enclosed in double quotes at line 1 "
     "column 2, here: { >>>instances: [1.0]}; put the JSON in single quotes so the shell "
     "keeps its double quotes"),
    (["predict", "--instances", "[1.0, 2.0"],
     "--instances is not valid JSON: Expecting ',' delimiter at line 1 column 10, here: "
     "[1.0, 2.0 >>>"),
    (["predict", "--json", "@no_such_request.json"],
     "cannot read --json file 'no_such_request.json': No such file or directory"),
    (["predict"], "predict needs a request body: --instances '[...]' or "
                  "--json '{\"instances\": [...]}'"),
    (["predict", "--json", "{}", "--instances", "[1]"], "give --json or --instances, not both"),
    (["classify", "--instances", "[1]"],
     "--instances is for predict; classify takes --json '{\"examples\": [...]}'"),
    (["status", "--json", "{}"], "status takes no --json: it is a GET with no body"),
    (["status", "--host", "http://localhost:8501/"],
     "--host takes a host name or address, not a URL or host:port ('http://localhost:8501/'); "
     "use --host localhost --rest_api_port 8501"),
    (["status", "--host", "127.0.0.1:9000"],
     "--host takes a host name or address, not a URL or host:port ('127.0.0.1:9000'); "
     "use --host 127.0.0.1 --rest_api_port 9000"),
    (["status", "--host", "local host"],
     "invalid --host or --rest_api_port: Failed to parse: Host 'local host' contains "
     "invalid character ' '"),
])
def test_cli_command_line_mistakes_are_one_line_and_exit_2(args, message):
    verb, *rest = args
    result = run_cli(verb, "--model", "half_plus_two", *rest)
    assert result.returncode == 2
    assert one_error_line(result) == message
    assert result.stdout == ""


@pytest.mark.parametrize("args, message", [
    (["--version", "1", "--label", "stable"], "argument --label: not allowed with argument "
                                              "--version"),
    (["--rest_api_port", "99999"], "argument --rest_api_port: port 99999 is not between 1 "
                                   "and 65535"),
    (["--timeout", "0"], "argument --timeout: must be a number of seconds above 0, got 0"),
])
def test_cli_flag_mistakes_exit_2_with_argparse_usage(args, message):
    result = run_cli("status", "--model", "half_plus_two", *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"usage: {PROG}")
    assert result.stderr.splitlines()[-1] == f"{PROG}: error: {message}"


def test_cli_passes_the_servers_error_through(at):
    result = run_cli("metadata", "--model", "nope", *at)
    assert result.returncode == 1
    assert one_error_line(result) == "HTTP 404: Servable not found for request: Latest(nope)"
    result = run_cli("predict", "--model", "half_plus_two", *at, "--instances", "[1.0]",
                     "--signature_name", "nope")
    assert result.returncode == 1
    assert one_error_line(result) == (
        'HTTP 400: Serving signature name: "nope" not found in signature def')
    # TF's message quotes the whole SignatureDef over many lines; it stays on one.
    result = run_cli("regress", "--model", "half_plus_two", *at,
                     "--json", '{"examples": [{"x": 1.0}]}')
    assert result.returncode == 1
    assert one_error_line(result).startswith(
        'HTTP 400: No regression inputs found in SignatureDef: inputs { key: "x" value {')


def test_cli_says_when_no_server_answers(models_server):
    port = portpicker.pick_unused_port()
    result = run_cli("status", "--model", "m", "--host", "127.0.0.1", f"--rest_api_port={port}")
    assert result.returncode == 1
    assert one_error_line(result) == (
        f"no server answers at 127.0.0.1:{port} (connection refused); start one with "
        f"`python -m serving.launch --rest_api_port={port} ...`")
    # The gRPC port speaks HTTP/2 frames, not an HTTP/1.1 answer.
    result = run_cli("status", "--model", "m", "--host", "127.0.0.1",
                     f"--rest_api_port={models_server.grpc_port}")
    assert result.returncode == 1
    assert one_error_line(result) == (
        f"127.0.0.1:{models_server.grpc_port} closed the connection without an HTTP answer; "
        "is it the server's REST port (--rest_api_port), not its gRPC port (--port)?")


class _NotTfServing(http.server.BaseHTTPRequestHandler):
    """Some other web server: HTML pages, a 200 that is not JSON."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path.endswith("/metadata"):
            self.send_error(404, "Not here", "<p>" + "no such page " * 50 + "</p>")
            return
        body = b"<html><body>It works!</body></html>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def other_web_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotTfServing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_cli_answers_that_are_not_json_are_errors_on_one_bounded_line(other_web_server):
    at = ["--host", "127.0.0.1", f"--rest_api_port={other_web_server}"]
    result = run_cli("status", "--model", "m", *at)
    assert result.returncode == 1
    assert one_error_line(result) == (
        "HTTP 200: the answer is not JSON: <html><body>It works!</body></html>")
    result = run_cli("metadata", "--model", "m", *at)
    assert result.returncode == 1
    message = one_error_line(result)
    assert message.startswith("HTTP 404: the answer is not JSON: <!DOCTYPE HTML")
    assert message.endswith("...") and len(message) < 300


def test_cli_output_into_a_closed_pipe_ends_quietly_like_cat(at):
    # What `python -m serving.client ... | head -1` meets once head has exited: a pipe
    # with no reader. cat dies of SIGPIPE there, silently; so must the client.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        cat = subprocess.run(["cat"], input=b"x" * 10, stdout=write_end,
                             stderr=subprocess.PIPE, timeout=10)
        result = run_cli("metadata", "--model", "half_plus_two", *at, stdout=write_end)
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (cat.returncode, "")
    assert cat.returncode == -13  # killed by SIGPIPE: the shell reports 141
