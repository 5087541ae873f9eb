"""Wires the model server together: flags -> configs -> manager -> REST and gRPC front ends.

Like tensorflow_model_server it loads the first model versions before opening any port,
and refuses to start at all when a flag or a config file is wrong.
"""
import concurrent.futures
import logging
import signal
import sys
import threading

from serving import errors, flags, heap, model_config, request_logging

log = logging.getLogger("serving")

VERSION = "2.16.1-python"  # the TF Serving release whose behaviour this server follows


class StartupError(Exception):
    """The server cannot start as configured; the message says why."""


class ModelServer:
    """One running server: a ModelManager plus its gRPC and (optional) REST endpoints."""

    def __init__(self, options, server_config, batching_parameters=None,
                 monitoring_config=None):
        from serving.manager import ModelManager

        self.options = options
        self.monitoring_config = monitoring_config
        self._stopped = threading.Event()
        self._finished = threading.Event()
        batcher_factory = None
        if options.enable_batching:
            from serving import batching

            batcher_factory = batching.batcher_factory(
                batching_parameters or model_config.BatchingParameters())

        def load_servable(name, version, path):
            from serving import warmup
            from serving.servable import Servable

            servable = Servable(name, version, path, batcher_factory=batcher_factory)
            if options.enable_model_warmup:
                try:  # part of the load: a failed warmup fails the version, as in TF Serving
                    warmup.run_warmup(servable, options.num_request_iterations_for_warmup)
                except BaseException:
                    servable.close()  # its batch threads, if warmup started any
                    raise
            return servable

        self.manager = ModelManager(
            server_config,
            file_system_poll_wait_seconds=options.file_system_poll_wait_seconds,
            servable_factory=load_servable,
            allow_version_labels_for_unavailable_models=(
                options.allow_version_labels_for_unavailable_models),
            max_num_load_retries=options.max_num_load_retries,
            load_retry_interval_micros=options.load_retry_interval_micros,
            # Loaded models out of full garbage collections: no 200 ms pauses every
            # ~16,000 requests (benchmarks/serving_results.md, "gc.freeze").
            on_versions_changed=heap.settle)
        # Reads the served config on each call, so a reload's logging_config applies at once.
        self.request_logger = request_logging.RequestLogger(
            lambda: self.manager.config,
            max_file_bytes=options.request_log_max_file_bytes,
            max_file_age_seconds=options.request_log_max_file_age_seconds)
        self.grpc_server = None
        self.http_server = None
        self.grpc_port = None
        self.rest_port = None
        self._config_poller = None

    def start(self):
        _configure_tensorflow_threads(self.options)
        try:
            self.manager.start()
        except errors.ServingError as e:
            raise StartupError(e.message) from None
        self.request_logger.start()
        self._start_grpc()
        if self.options.rest_api_port:
            self._start_rest()
        if self.options.model_config_file and self.options.model_config_file_poll_wait_seconds > 0:
            self._config_poller = threading.Thread(target=self._poll_config_file,
                                                   name="config-poller", daemon=True)
            self._config_poller.start()

    def _start_grpc(self):
        import grpc

        channel_options = [("grpc.max_send_message_length", 2 ** 31 - 1),
                           ("grpc.max_receive_message_length", 2 ** 31 - 1)]
        channel_options += parse_grpc_channel_arguments(self.options.grpc_channel_arguments)
        # grpc turns SO_REUSEPORT on by default: a second server on a busy port would then
        # share it and take half its requests. Last, as grpc honours a key's first value.
        channel_options.append(("grpc.so_reuseport", 0))
        self.grpc_server = grpc.server(
            concurrent.futures.ThreadPoolExecutor(max_workers=self.options.grpc_max_threads,
                                                  thread_name_prefix="grpc"),
            options=channel_options)
        try:
            from serving import grpc_api
        except ImportError as e:
            log.error("serving.grpc_api could not be imported (%s): the gRPC port is open "
                      "but serves no API", e)
        else:
            grpc_api.add_services(self.grpc_server, self.manager, self.request_logger)

        def bind(address):
            try:  # grpc raises on a taken address, or returns 0 in older releases
                port = self.grpc_server.add_insecure_port(address)
            except RuntimeError:
                port = 0
            if not port:
                raise StartupError(f"Failed to BuildAndStart gRPC server: cannot bind "
                                   f"{address} (is another server using this port?)")
            return port

        self.grpc_port = bind(f"{self.options.bind_address}:{self.options.port}")
        if self.options.grpc_socket_path:
            bind(f"unix:{self.options.grpc_socket_path}")
        self.grpc_server.start()
        log.info("Running gRPC ModelServer at %s:%d ...", self.options.bind_address,
                 self.grpc_port)

    def _start_rest(self):
        from serving import rest_server

        try:
            self.http_server = rest_server.RestServer(
                self.options.bind_address, self.options.rest_api_port, self.manager,
                request_logger=self.request_logger,
                timeout_in_ms=self.options.rest_api_timeout_in_ms,
                enable_cors=self.options.rest_api_enable_cors_support,
                num_threads=self.options.rest_api_num_threads,
                monitoring_config=self.monitoring_config,
                max_body_bytes=self.options.rest_api_max_request_body_bytes,
                read_timeout_in_ms=self.options.rest_api_read_timeout_in_ms)
        except OSError as e:
            raise StartupError(f"Failed to start HTTP Server at {self.options.bind_address}:"
                               f"{self.options.rest_api_port}: {e}") from None
        self.rest_port = self.http_server.port
        self.http_server.start()
        host = "localhost" if self.options.bind_address in ("127.0.0.1", "localhost") \
            else self.options.bind_address
        log.info("Exporting HTTP/REST API at:%s:%d ...", host, self.rest_port)

    def _poll_config_file(self):
        path = self.options.model_config_file
        last_text = None
        # A refused config is tried again on every poll (its base path may fill up later),
        # but its error is logged once, not every poll.
        last_error, failed_text = None, None
        while not self._stopped.wait(self.options.model_config_file_poll_wait_seconds):
            text = None
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                if text == last_text:
                    continue
                config = model_config.read_model_server_config(path)
                if config != self.manager.config:
                    if text != failed_text:
                        log.info("Reloading model config from %s", path)
                    self.manager.reload_config(config)
                last_text, last_error, failed_text = text, None, None
            except (errors.ServingError, OSError) as e:
                error = (f"Failed to reload model config {path}: {e.message}"
                         if isinstance(e, errors.ServingError)
                         else f"Failed to read model config {path}: {e}")
                if error != last_error:
                    log.error("%s", error)
                last_error, failed_text = error, text

    def wait(self, stop_timeout: float = 30):
        """Returns once stop() has finished (its request logs are on disk), or stop_timeout
        seconds after it began."""
        self._stopped.wait()
        self._finished.wait(stop_timeout)

    def stop(self):
        self._stopped.set()
        try:
            if self.http_server is not None:
                self.http_server.stop()
            if self.grpc_server is not None:
                self.grpc_server.stop(grace=1).wait(5)
            # After the front ends: calls answered during their grace period are logged too.
            self.request_logger.stop()
            self.manager.stop()
        finally:
            self._finished.set()


def parse_grpc_channel_arguments(text: str) -> list:
    """"a=1,b=x" -> [("a", 1), ("b", "x")]; integers passed as ints, as TF Serving does."""
    arguments = []
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        try:
            arguments.append((key, int(value)))
        except ValueError:
            arguments.append((key, value))
    return arguments


def _configure_tensorflow_threads(options):
    from serving.servable import tensorflow

    tf = tensorflow()
    intra = options.tensorflow_intra_op_parallelism or options.tensorflow_session_parallelism
    inter = options.tensorflow_inter_op_parallelism or options.tensorflow_session_parallelism
    if intra:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
    if inter:
        tf.config.threading.set_inter_op_parallelism_threads(inter)


def _read_configs(options):
    """All config files, parsed up front so a bad one stops the server before it serves."""
    server_config = model_config.server_config_from_options(options)
    batching_parameters = None
    if options.batching_parameters_file and not options.enable_batching:
        log.warning("--batching_parameters_file is ignored without --enable_batching")
    elif options.batching_parameters_file:
        batching_parameters = model_config.read_batching_parameters(
            options.batching_parameters_file)
    monitoring_config = None
    if options.monitoring_config_file:
        monitoring_config = model_config.read_monitoring_config(options.monitoring_config_file)
    if options.ssl_config_file:
        raise StartupError("--ssl_config_file is not supported by this server")
    return server_config, batching_parameters, monitoring_config


def main(argv=None) -> int:
    options = flags.parse_or_exit(sys.argv[1:] if argv is None else argv)
    if options.version:
        print(f"TensorFlow ModelServer: {VERSION}")
        return 0
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname).1s %(name)s] %(message)s")
    try:
        server_config, batching_parameters, monitoring_config = _read_configs(options)
        server = ModelServer(options, server_config, batching_parameters, monitoring_config)
        server.start()
    except errors.ServingError as e:
        log.critical("Failed to start server: %s: %s", e.code_name, e.message)
        return 1
    except StartupError as e:
        log.critical("Failed to start server: %s", e)
        return 1

    def handle_signal(signum, _frame):
        log.info("Received signal %d, shutting down", signum)
        threading.Thread(target=server.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, handle_signal)
    signal.signal(signal.SIGINT, handle_signal)
    server.wait()
    return 0
