"""Request counts, latencies and request-log counts, in Prometheus text format under TF Serving's names.

TF Serving's exporter turns "/tensorflow/serving/request_count" into
":tensorflow:serving:request_count"; both REST and gRPC report here through observe_request,
the request logger through count_request_logs, SavedModel warmup through observe_warmup
(its replayed requests are not requests: they are counted only there). The *_by_version
families are ours (TF Serving has no request metric with a version label): a release
controller compares a canary version with the stable one through them.
"""
import threading

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
# TF Serving's RequestLogger counter: logs by model and status code ("OK": written to its
# file; here also "RESOURCE_EXHAUSTED": dropped on a full queue, "INTERNAL": a write failed).
REQUEST_LOG_COUNT = ":tensorflow:serving:request_log_count"
REQUEST_LOG_BYTES = ":tensorflow:serving:request_log_bytes"  # not in TF Serving; its style
# Not in TF Serving, in its style: inference calls by the version they resolved to.
REQUEST_COUNT_BY_VERSION = ":tensorflow:serving:request_count_by_version"
REQUEST_LATENCY_BY_VERSION = ":tensorflow:serving:request_latency_by_version"
# TF Serving's warmup metrics (saved_model_warmup_util.cc), by the version's directory and
# the warmup's final status as absl::Status::ToString writes it ("OK", "DATA_LOSS: ...").
# model_warmup_records_read came after TF Serving 2.16; its HEAD has both.
MODEL_WARMUP_LATENCY = ":tensorflow:serving:model_warmup_latency"
MODEL_WARMUP_RECORDS_READ = ":tensorflow:serving:model_warmup_records_read"
# TF Serving's latency sampler: microseconds, Buckets::Exponential(10, 1.8, 33).
LATENCY_BOUNDS_MICROS = [10 * 1.8 ** i for i in range(33)]
DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"

# The contract's short API names -> the API label TF Serving uses.
_API_LABELS = {
    "predict": "Predict",
    "classify": "Classify",
    "regress": "Regress",
    "multi_inference": "MultiInference",
    "metadata": "GetModelMetadata",
    "status": "GetModelStatus",
}

# The APIs that run a version; only these are counted by version (status and metadata
# calls say nothing about how a version serves).
INFERENCE_APIS = ("predict", "classify", "regress", "multi_inference")

# Requests for a model the server does not serve are counted under this one name: labelled
# by the requested name, every typo or scan would add series forever.
UNKNOWN_MODEL_LABEL = "<unknown>"


def model_label(model_name: str, served_model_names) -> str:
    """The model_name label for a request: its model if served, else UNKNOWN_MODEL_LABEL."""
    return model_name if model_name in served_model_names else UNKNOWN_MODEL_LABEL


_lock = threading.Lock()
_request_counts = {}  # (model_name, status) -> count
_latencies = {}  # (model_name, API, entrypoint) -> [bucket counts..., sum, count]
_request_log_counts = {}  # (model_name, status_code) -> count
_request_log_bytes = {}  # model_name -> bytes written to request log files
_request_counts_by_version = {}  # (model_name, version, status) -> count
_latencies_by_version = {}  # (model_name, version) -> [bucket counts..., sum, count]
_warmup_latencies = {}  # (model_path, status) -> [bucket counts..., sum, count]
_warmup_records_read = {}  # (model_path, status) -> records


def observe_request(model_name: str, api: str, status: str, seconds: float,
                    entrypoint: str = "GRPC", version=None) -> None:
    """Counts one finished request. `status` is a status code name ("OK", "NOT_FOUND").

    entrypoint is "GRPC" or "REST", the label TF Serving puts on request_latency.
    version: the version number an inference call resolved to (by number, label or
    latest), None if it never got that far; it is what the *_by_version families count.
    """
    api_label = _API_LABELS.get(api, api)
    micros = max(seconds, 0.0) * 1e6
    by_version = version is not None and api in INFERENCE_APIS
    with _lock:
        key = (model_name, status)
        _request_counts[key] = _request_counts.get(key, 0) + 1
        _add_to_histogram(_latencies, (model_name, api_label, entrypoint), micros)
        if by_version:
            key = (model_name, int(version), status)
            _request_counts_by_version[key] = _request_counts_by_version.get(key, 0) + 1
            _add_to_histogram(_latencies_by_version, (model_name, int(version)), micros)


def observe_warmup(model_path: str, status: str, seconds: float, records_read: int) -> None:
    """Counts one finished warmup of the version at model_path; status: "OK" or
    "<CODE NAME>: <message>", as TF Serving labels it."""
    with _lock:
        _add_to_histogram(_warmup_latencies, (model_path, status), max(seconds, 0.0) * 1e6)
        key = (model_path, status)
        _warmup_records_read[key] = _warmup_records_read.get(key, 0) + records_read


def _add_to_histogram(histograms: dict, key, micros: float) -> None:
    """One observation into histograms[key]: [count per bucket..., +Inf bucket, sum, count]."""
    histogram = histograms.setdefault(key, [0] * (len(LATENCY_BOUNDS_MICROS) + 1) + [0.0, 0])
    for i, bound in enumerate(LATENCY_BOUNDS_MICROS):
        if micros <= bound:
            histogram[i] += 1
            break
    else:
        histogram[len(LATENCY_BOUNDS_MICROS)] += 1
    histogram[-2] += micros
    histogram[-1] += 1


def count_request_logs(model_name: str, status_code: str, count: int = 1,
                       num_bytes: int = 0) -> None:
    """Counts request logs of one model that ended with `status_code` ("OK": written)."""
    with _lock:
        key = (model_name, status_code)
        _request_log_counts[key] = _request_log_counts.get(key, 0) + count
        if num_bytes:
            _request_log_bytes[model_name] = _request_log_bytes.get(model_name, 0) + num_bytes


def _label_text(**labels) -> str:
    def escape(value):
        return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}"


def _number(value) -> str:
    if isinstance(value, float) and not value.is_integer():
        return repr(value)
    return str(int(value))


def _histogram_lines(name: str, values: list, **labels) -> list:
    """A histogram's _bucket (cumulative, le in microseconds), _sum and _count lines."""
    lines = []
    cumulative = 0
    for i, bound in enumerate(LATENCY_BOUNDS_MICROS + [float("inf")]):
        cumulative += values[i]
        le = "+Inf" if bound == float("inf") else _number(round(bound, 6))
        lines.append(f"{name}_bucket{_label_text(**labels, le=le)} {cumulative}")
    lines.append(f"{name}_sum{_label_text(**labels)} {_number(values[-2])}")
    lines.append(f"{name}_count{_label_text(**labels)} {values[-1]}")
    return lines


def prometheus_text() -> str:
    """The page served at the monitoring config's prometheus path."""
    with _lock:
        counts = dict(_request_counts)
        latencies = {k: list(v) for k, v in _latencies.items()}
        log_counts = dict(_request_log_counts)
        log_bytes = dict(_request_log_bytes)
        counts_by_version = dict(_request_counts_by_version)
        latencies_by_version = {k: list(v) for k, v in _latencies_by_version.items()}
        warmup_latencies = {k: list(v) for k, v in _warmup_latencies.items()}
        warmup_records_read = dict(_warmup_records_read)
    lines = [f"# TYPE {REQUEST_COUNT} counter"]
    for (model_name, status), count in sorted(counts.items()):
        lines.append(f"{REQUEST_COUNT}{_label_text(model_name=model_name, status=status)} "
                     f"{count}")
    lines.append(f"# TYPE {REQUEST_LATENCY} histogram")
    for (model_name, api, entrypoint), values in sorted(latencies.items()):
        lines += _histogram_lines(REQUEST_LATENCY, values, model_name=model_name, API=api,
                                  entrypoint=entrypoint)
    lines.append(f"# TYPE {REQUEST_COUNT_BY_VERSION} counter")
    for (model_name, version, status), count in sorted(counts_by_version.items()):
        labels = _label_text(model_name=model_name, version=version, status=status)
        lines.append(f"{REQUEST_COUNT_BY_VERSION}{labels} {count}")
    lines.append(f"# TYPE {REQUEST_LATENCY_BY_VERSION} histogram")
    for (model_name, version), values in sorted(latencies_by_version.items()):
        lines += _histogram_lines(REQUEST_LATENCY_BY_VERSION, values, model_name=model_name,
                                  version=version)
    lines.append(f"# TYPE {MODEL_WARMUP_LATENCY} histogram")
    for (model_path, status), values in sorted(warmup_latencies.items()):
        lines += _histogram_lines(MODEL_WARMUP_LATENCY, values, model_path=model_path,
                                  status=status)
    lines.append(f"# TYPE {MODEL_WARMUP_RECORDS_READ} counter")
    for (model_path, status), count in sorted(warmup_records_read.items()):
        labels = _label_text(model_path=model_path, status=status)
        lines.append(f"{MODEL_WARMUP_RECORDS_READ}{labels} {count}")
    lines.append(f"# TYPE {REQUEST_LOG_COUNT} counter")
    for (model_name, status_code), count in sorted(log_counts.items()):
        labels = _label_text(model_name=model_name, status_code=status_code)
        lines.append(f"{REQUEST_LOG_COUNT}{labels} {count}")
    lines.append(f"# TYPE {REQUEST_LOG_BYTES} counter")
    for model_name, count in sorted(log_bytes.items()):
        lines.append(f"{REQUEST_LOG_BYTES}{_label_text(model_name=model_name)} {count}")
    return "\n".join(lines) + "\n"
