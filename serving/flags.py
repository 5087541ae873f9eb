"""tensorflow_model_server's command line: same flag names, meanings and defaults.

Parsed the way TensorFlow's Flags::Parse does (--name=value, bare --name for booleans);
a bad flag prints the usage and exits non-zero before anything is loaded.
"""
import dataclasses
import os
import sys

_CPUS = os.cpu_count() or 1
IGNORED = "accepted for compatibility; no effect in this server"

# (name, type, default, help). Types: int, float, str, bool.
FLAGS = [
    ("port", int, 8500, "Port to listen on for gRPC API"),
    ("grpc_socket_path", str, "",
     "If non-empty, listen to a UNIX socket for gRPC API on the given path. Can be either "
     "relative or absolute path."),
    ("rest_api_port", int, 0,
     "Port to listen on for HTTP/REST API. If set to zero HTTP/REST API will not be exported. "
     "This port must be different than the one specified in --port."),
    ("rest_api_num_threads", int, 4 * _CPUS,
     "Number of threads for HTTP/REST API processing. If not set, will be auto set based on "
     "number of CPUs."),
    ("rest_api_timeout_in_ms", int, 30000, "Timeout for HTTP/REST API calls."),
    ("rest_api_enable_cors_support", bool, False, "Enable CORS headers in response"),
    # Not in tensorflow_model_server, whose evhttp server sets no body limit (its only bound
    # is 100 MB on a gzip body once inflated, ZLib::kMaxUncompressedBytes) and keeps
    # libevent's 50 s read timeout; named in its style.
    ("rest_api_max_request_body_bytes", int, 100 * 1024 * 1024,
     "Largest HTTP/REST request body accepted; a larger one is refused with HTTP 413."),
    ("rest_api_read_timeout_in_ms", int, 50000,
     "Time a client has to send a whole HTTP/REST request (headers and body), counted from "
     "the connection opening or the previous response; also how long an idle keep-alive "
     "connection is kept."),
    # Not in tensorflow_model_server, which has no working request logger; named in its style.
    ("request_log_max_file_bytes", int, 64 * 1024 * 1024,
     "A request log file (logging_config in --model_config_file) is closed and the next one "
     "started once it would grow past this many bytes."),
    ("request_log_max_file_age_seconds", int, 3600,
     "A request log file is closed and the next one started once it has been open this long."),
    ("bind_address", str, "127.0.0.1",
     "Address the gRPC and HTTP/REST servers listen on. Defaults to loopback only (unlike "
     "tensorflow_model_server, which listens on all interfaces); pass 0.0.0.0 to serve other "
     "hosts."),
    ("enable_batching", bool, False, "enable batching"),
    ("allow_version_labels_for_unavailable_models", bool, False,
     "If true, allows assigning unused version labels to models that are not available yet."),
    ("batching_parameters_file", str, "",
     "If non-empty, read an ascii BatchingParameters protobuf from the supplied file name and "
     "use the contained values instead of the defaults."),
    ("model_config_file", str, "",
     "If non-empty, read an ascii ModelServerConfig protobuf from the supplied file name, and "
     "serve the models in that file. This config file can be used to specify multiple models "
     "to serve and other advanced parameters including non-default version policy. (If used, "
     "--model_name, --model_base_path are ignored.)"),
    ("model_config_file_poll_wait_seconds", int, 0,
     "Interval in seconds between each poll of the filesystemfor model_config_file. If unset "
     "or set to zero, poll will be done exactly once and not periodically. Setting this to "
     "negative is reserved for testing purposes only."),
    ("model_name", str, "default", "name of model (ignored if --model_config_file flag is set)"),
    ("model_base_path", str, "",
     "path to export (ignored if --model_config_file flag is set, otherwise required)"),
    ("num_load_threads", int, 0, "The number of threads in the thread-pool used to load "
                                 "servables. (" + IGNORED + ")"),
    ("num_unload_threads", int, 0, "The number of threads in the thread-pool used to unload "
                                   "servables. (" + IGNORED + ")"),
    ("max_num_load_retries", int, 5,
     "maximum number of times it retries loading a model after the first failure, before "
     "giving up. If set to 0, a load is attempted only once."),
    ("load_retry_interval_micros", int, 60 * 1000 * 1000,
     "The interval, in microseconds, between each servable load retry. If set negative, it "
     "doesn't wait. Default: 1 minute"),
    ("file_system_poll_wait_seconds", int, 1,
     "Interval in seconds between each poll of the filesystem for new model version. If set "
     "to zero poll will be exactly done once and not periodically. Setting this to negative "
     "value will disable polling entirely causing ModelServer to indefinitely wait for a new "
     "model at startup. Negative values are reserved for testing purposes only."),
    ("flush_filesystem_caches", bool, True, "(" + IGNORED + ")"),
    ("tensorflow_session_parallelism", int, 0,
     "Number of threads to use for running a Tensorflow session. Auto-configured by default."),
    ("tensorflow_intra_op_parallelism", int, 0,
     "Number of threads to use to parallelize the executionof an individual op. "
     "Auto-configured by default."),
    ("tensorflow_inter_op_parallelism", int, 0,
     "Controls the number of operators that can be executed simultaneously. Auto-configured "
     "by default."),
    ("ssl_config_file", str, "", "If non-empty, read an ascii SSLConfig protobuf from the "
                                 "supplied file name and set up a secure gRPC channel"),
    ("platform_config_file", str, "", "(" + IGNORED + ")"),
    ("per_process_gpu_memory_fraction", float, 0.0, "(" + IGNORED + ")"),
    ("saved_model_tags", str, "serve",
     "Comma-separated set of tags corresponding to the meta graph def to load from SavedModel."),
    ("grpc_channel_arguments", str, "",
     "A comma separated list of arguments to be passed to the grpc server. (e.g. "
     "grpc.max_connection_age_ms=2000)"),
    ("grpc_max_threads", int, 4 * _CPUS, "Max grpc server threads to handle grpc messages."),
    ("enable_model_warmup", bool, True,
     "Enables model warmup, which triggers lazy initializations (such as TF optimizations) "
     "at load time, to reduce first request latency."),
    ("num_request_iterations_for_warmup", int, 0,
     "Number of times a request is iterated during warmup replay. This value is used only "
     "if > 0."),
    ("version", bool, False, "Display version"),
    ("monitoring_config_file", str, "",
     "If non-empty, read an ascii MonitoringConfig protobuf from the supplied file name"),
    ("remove_unused_fields_from_bundle_metagraph", bool, True, "(" + IGNORED + ")"),
    ("prefer_tflite_model", bool, False, "(" + IGNORED + ")"),
    ("num_tflite_pools", int, 1, "(" + IGNORED + ")"),
    ("num_tflite_interpreters_per_pool", int, 1, "(" + IGNORED + ")"),
    ("enable_signature_method_name_check", bool, False,
     "Enable method_name check for SignatureDef. Disable this if serving native TF2 "
     "regression/classification models."),
    ("xla_cpu_compilation_enabled", bool, False, "(" + IGNORED + ")"),
    ("enable_profiler", bool, True, "(" + IGNORED + ")"),
    ("thread_pool_factory_config_file", str, "", "(" + IGNORED + ")"),
    ("mixed_precision", str, "", "(" + IGNORED + ")"),
    ("skip_initialize_tpu", bool, False, "(" + IGNORED + ")"),
    ("enable_grpc_healthcheck_service", bool, False, "(" + IGNORED + ")"),
]

Options = dataclasses.make_dataclass(
    "Options", [(name, type_, dataclasses.field(default=default))
                for name, type_, default, _ in FLAGS])
Options.__doc__ = "Parsed flags: one attribute per tensorflow_model_server flag."

_TYPE_NAMES = {int: "int32", float: "float", str: "string", bool: "bool"}


class FlagError(Exception):
    """A command line TF Serving would refuse; str() is the message to print before usage."""


def usage() -> str:
    lines = ["usage: python -m serving (same flags as tensorflow_model_server)", "Flags:"]
    for name, type_, default, help_text in FLAGS:
        shown = str(default).lower() if type_ is bool else (
            f'"{default}"' if type_ is str else str(default))
        lines.append(f"\t--{name}={shown}\t{_TYPE_NAMES[type_]}\t{help_text}")
    return "\n".join(lines) + "\n"


def _convert(name, type_, text):
    if type_ is bool:
        lowered = text.lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
    else:
        try:
            value = type_(text)
            if type_ is int and not -2 ** 63 <= value < 2 ** 63:
                raise ValueError(text)
            return value
        except ValueError:
            pass
    raise FlagError(f"Couldn't interpret value {text} for flag {name}.")


def parse(argv) -> Options:
    """Parses argv (without the program name); raises FlagError on anything TF would reject."""
    by_name = {name: (name, type_) for name, type_, _, _ in FLAGS}
    values = {}
    for arg in argv:
        if arg in ("--help", "-help", "--helpfull", "-h"):
            raise FlagError("")
        if not arg.startswith("-"):
            raise FlagError(f"unknown argument: {arg}")
        body = arg[2:] if arg.startswith("--") else arg[1:]
        name, has_value, text = body.partition("=")
        if name not in by_name:
            raise FlagError(f"unknown argument: {arg}")
        _, type_ = by_name[name]
        if not has_value:
            if type_ is not bool:
                raise FlagError(f"Couldn't interpret value  for flag {name}.")
            values[name] = True
        else:
            values[name] = _convert(name, type_, text)
    options = Options(**values)
    if not options.version and not options.model_base_path and not options.model_config_file:
        raise FlagError("Either --model_base_path or --model_config_file must be set.")
    if options.rest_api_port and options.rest_api_port == options.port:
        raise FlagError("--rest_api_port cannot be same as --port. Please use a different port "
                        "for HTTP/REST API.")
    for name in ("port", "rest_api_port"):
        if not 0 <= getattr(options, name) <= 65535:
            raise FlagError(f"--{name} must be between 0 and 65535, got {getattr(options, name)}")
    return options


def parse_or_exit(argv) -> Options:
    try:
        return parse(argv)
    except FlagError as e:
        message = str(e)
        if message:
            sys.stderr.write(message + "\n")
        sys.stdout.write(usage())
        sys.stdout.flush()
        # tensorflow_model_server returns -1 from main on a bad command line.
        sys.exit(0 if not message else 255)
