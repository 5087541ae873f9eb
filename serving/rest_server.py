"""The HTTP/1.1 transport of the REST API: uvicorn's httptools protocol on a uvloop event loop.

Chosen over aiohttp's low-level server and the stdlib http.server on measurements (see the
commit that introduced it). The event loop frames requests and keeps their deadlines;
RestApi.handle_async runs TensorFlow on a pool of --rest_api_num_threads threads, as TF
Serving's HTTP executor (or, batching on, on the batch threads).
Every answer this layer makes itself (malformed framing, a body over the limit, a request
that never finishes) is TF Serving's {"error": ...} JSON, and such a connection is closed.
"""
import concurrent.futures
import logging
import socket
import threading

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from serving import json_codec, metrics
from serving.rest_api import API_PATH, CORS_HEADERS, RestApi

# Request line plus headers; nginx and most proxies stop well below this.
MAX_HEADER_BYTES = 64 * 1024

_CORS = [(name.lower().encode(), value.encode()) for name, value in CORS_HEADERS]
_CLOSE = (b"connection", b"close")
_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 413: b"Payload Too Large",
            431: b"Request Header Fields Too Large"}


def to_utf8(text: str) -> bytes:
    """Model strings are bytes decoded with surrogateescape: send those bytes back as they
    were. A lone surrogate that is not such a byte cannot be UTF-8; escape it, never fail."""
    try:
        return text.encode("utf-8", errors="surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="backslashreplace")


class _BodyTooLarge(Exception):
    def __init__(self, size):
        super().__init__(size)
        self.size = size


def _content_length(headers):
    """The declared Content-Length; httptools has already refused a malformed one."""
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class RestApp:
    """The raw ASGI application: body limits, CORS, the metrics path, then RestApi."""

    def __init__(self, api: RestApi, executor, enable_cors: bool, prometheus_path,
                 max_body_bytes: int):
        self.api = api
        self.executor = executor
        self.enable_cors = enable_cors
        self.prometheus_path = prometheus_path
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        method = scope["method"]
        # The raw path, as TF Serving matches it: model names are unquoted by RestApi.
        path = scope["raw_path"].decode("latin-1")
        declared = _content_length(scope["headers"])
        if declared is not None and declared > self.max_body_bytes:
            # Answer before reading: a client announcing 1 TB must not be read from.
            await self._send(send, 413, self._too_large(declared), close=True)
            return
        try:
            body = await self._read_body(receive)
        except _BodyTooLarge as e:
            await self._send(send, 413, self._too_large(e.size), close=True)
            return
        if body is None:  # the client went away or the request timed out: no one to answer
            return
        if method == "OPTIONS" and self.enable_cors:
            await self._send(send, 200, b"", cors=True)
            return
        if self.prometheus_path and path == self.prometheus_path:
            await self._send(send, 200, metrics.prometheus_text().encode(),
                             content_type=b"text/plain")
            return
        if not API_PATH.fullmatch(path):
            # TF Serving's HTTP server has no handler for other paths: a bare 404.
            await self._send(send, 404, b"", content_type=None)
            return
        # Signatures run on the pool or the batch threads, never here: a slow one must not
        # stall every other connection, and --enable_batching needs requests together.
        status, output = await self.api.handle_async(method, path, body, self.executor)
        await self._send(send, status, to_utf8(output), cors=self.enable_cors)

    async def _read_body(self, receive):
        """The whole body, or None if the connection ended first. A chunked body is counted
        as it arrives and refused past the limit."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _BodyTooLarge(size)
            if not message.get("more_body"):
                if not chunks:
                    return chunk
                chunks.append(chunk)
                return b"".join(chunks)
            chunks.append(chunk)

    def _too_large(self, size: int) -> bytes:
        return json_codec.encode_error(
            f"Request body of {size} bytes exceeds the limit of {self.max_body_bytes} bytes "
            "(--rest_api_max_request_body_bytes)").encode()

    @staticmethod
    async def _send(send, status, payload: bytes, content_type=b"application/json",
                    cors=False, close=False):
        headers = [(b"content-length", str(len(payload)).encode())]
        if content_type:
            headers.append((b"content-type", content_type))
        if cors:
            headers += _CORS
        if close:
            headers.append(_CLOSE)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


class _GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the guards a server on the open network needs.

    uvicorn restarts its keep-alive timer on every byte, so a client sending one header byte
    a second holds a connection forever, and it accepts headers of any size. Here a request
    must arrive whole within read_timeout_seconds of the connection opening or the previous
    response (TF Serving's evhttp has the same kind of timeout); bad framing is answered
    in JSON and the connection closed, so a body can never be read as the next request.
    """

    read_timeout_seconds = 50.0  # set per server by _protocol_class

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._read_timer = None
        self._receiving_headers = True
        self._header_bytes = 0
        self._request_begun = False
        self._rejected = False

    def connection_made(self, transport):
        super().connection_made(transport)
        self._arm_read_timer()

    def connection_lost(self, exc):
        self._cancel_read_timer()
        super().connection_lost(exc)

    def data_received(self, data):
        if self._rejected or self.parser is None:
            return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # No protocol upgrades here: answer the request, then close.
            if self.cycle is not None:
                self.cycle.keep_alive = False
            self._rejected = True
            return
        except httptools.HttpParserError as e:
            self._reject(400, f"Malformed HTTP request: {e}")
            return
        if self._receiving_headers:
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES:
                self._reject(431, f"Request headers exceed {MAX_HEADER_BYTES} bytes")

    # Parser callbacks: track where in a request the connection is.
    def on_message_begin(self):
        self._request_begun = True
        super().on_message_begin()

    def on_headers_complete(self):
        self._receiving_headers = False
        super().on_headers_complete()

    def on_message_complete(self):
        self._cancel_read_timer()
        self._request_begun = False
        self._receiving_headers = True
        self._header_bytes = 0
        super().on_message_complete()

    def on_response_complete(self):
        super().on_response_complete()
        # uvicorn arms its keep-alive timer only when no pipelined request is waiting.
        if self.timeout_keep_alive_task is not None:
            self._arm_read_timer()

    # Deadline for receiving a request.
    def _arm_read_timer(self):
        self._cancel_read_timer()
        self._read_timer = self.loop.call_later(self.read_timeout_seconds, self._on_read_timeout)

    def _cancel_read_timer(self):
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _on_read_timeout(self):
        self._read_timer = None
        if self.transport.is_closing():
            return
        if self._request_begun:
            self._reject(408, "Timed out receiving the request after "
                              f"{self.read_timeout_seconds * 1000:.0f} ms")
        elif self.cycle is None or self.cycle.response_complete:
            self.transport.close()  # an idle keep-alive connection

    def _reject(self, status: int, message: str):
        """Answers a request this layer cannot frame, then closes: what follows is unreadable."""
        self._rejected = True
        self._cancel_read_timer()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and (
                cycle.response_started or not cycle.more_body):
            # A request received whole is still being answered: let that answer go out
            # whole, then close instead of writing into the middle of it.
            cycle.keep_alive = False
            return
        payload = to_utf8(json_codec.encode_error(message))
        self.transport.write(b"".join([
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Error")),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(payload),
            b"connection: close\r\n\r\n", payload]))
        self.transport.close()


def _protocol_class(read_timeout_seconds: float):
    return type("RestProtocol", (_GuardedProtocol,),
                {"read_timeout_seconds": read_timeout_seconds})


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket; fails if the port is taken (SO_REUSEADDR only, never REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class RestServer:
    """The REST API on host:port, served by uvicorn on its own thread."""

    def __init__(self, host: str, port: int, manager, timeout_in_ms: int = 30000,
                 enable_cors: bool = False, num_threads: int = 0, monitoring_config=None,
                 max_body_bytes: int = 100 * 1024 * 1024, read_timeout_in_ms: int = 50000,
                 request_logger=None):
        self.socket = _bind(host, port)  # before anything else, so a taken port fails start-up
        self.port = self.socket.getsockname()[1]
        prometheus_path = None
        if monitoring_config is not None and monitoring_config.prometheus_config.enable:
            prometheus_path = (monitoring_config.prometheus_config.path
                               or metrics.DEFAULT_PROMETHEUS_PATH)
        # At most --rest_api_num_threads requests run at once, like TF Serving's executor;
        # batched predicts wait on the event loop instead, bounded by the batch queue.
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=num_threads if num_threads > 0 else 64, thread_name_prefix="rest")
        app = RestApp(RestApi(manager, timeout_in_ms, request_logger), self.executor,
                      enable_cors, prometheus_path, max_body_bytes)
        read_timeout_seconds = max(read_timeout_in_ms, 1) / 1000.0
        config = uvicorn.Config(
            app, loop="uvloop", http=_protocol_class(read_timeout_seconds), ws="none",
            lifespan="off", access_log=False, log_config=None, server_header=False,
            proxy_headers=False,
            timeout_keep_alive=read_timeout_seconds, timeout_graceful_shutdown=1)
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self.socket]},
                                        name="rest-api", daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        self._server.should_exit = True
        self._thread.join(timeout=5)
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.socket.close()
