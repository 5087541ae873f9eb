"""Request counts, latencies and request-log counts, in Prometheus text format under TF Serving's names.

TF Serving's exporter turns "/tensorflow/serving/request_count" into
":tensorflow:serving:request_count"; both REST and gRPC report here through observe_request,
the request logger through count_request_logs.
"""
import threading

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
# TF Serving's RequestLogger counter: logs by model and status code ("OK": written to its
# file; here also "RESOURCE_EXHAUSTED": dropped on a full queue, "INTERNAL": a write failed).
REQUEST_LOG_COUNT = ":tensorflow:serving:request_log_count"
REQUEST_LOG_BYTES = ":tensorflow:serving:request_log_bytes"  # not in TF Serving; its style
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


def observe_request(model_name: str, api: str, status: str, seconds: float,
                    entrypoint: str = "GRPC") -> None:
    """Counts one finished request. `status` is a status code name ("OK", "NOT_FOUND").

    entrypoint is "GRPC" or "REST", the label TF Serving puts on request_latency.
    """
    api_label = _API_LABELS.get(api, api)
    micros = max(seconds, 0.0) * 1e6
    with _lock:
        key = (model_name, status)
        _request_counts[key] = _request_counts.get(key, 0) + 1
        latency = _latencies.setdefault((model_name, api_label, entrypoint),
                                        [0] * (len(LATENCY_BOUNDS_MICROS) + 1) + [0.0, 0])
        for i, bound in enumerate(LATENCY_BOUNDS_MICROS):
            if micros <= bound:
                latency[i] += 1
                break
        else:
            latency[len(LATENCY_BOUNDS_MICROS)] += 1
        latency[-2] += micros
        latency[-1] += 1


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


def prometheus_text() -> str:
    """The page served at the monitoring config's prometheus path."""
    with _lock:
        counts = dict(_request_counts)
        latencies = {k: list(v) for k, v in _latencies.items()}
        log_counts = dict(_request_log_counts)
        log_bytes = dict(_request_log_bytes)
    lines = [f"# TYPE {REQUEST_COUNT} counter"]
    for (model_name, status), count in sorted(counts.items()):
        lines.append(f"{REQUEST_COUNT}{_label_text(model_name=model_name, status=status)} "
                     f"{count}")
    lines.append(f"# TYPE {REQUEST_LATENCY} histogram")
    for (model_name, api, entrypoint), values in sorted(latencies.items()):
        cumulative = 0
        for i, bound in enumerate(LATENCY_BOUNDS_MICROS + [float("inf")]):
            cumulative += values[i]
            le = "+Inf" if bound == float("inf") else _number(round(bound, 6))
            labels = _label_text(model_name=model_name, API=api, entrypoint=entrypoint, le=le)
            lines.append(f"{REQUEST_LATENCY}_bucket{labels} {cumulative}")
        labels = _label_text(model_name=model_name, API=api, entrypoint=entrypoint)
        lines.append(f"{REQUEST_LATENCY}_sum{labels} {_number(values[-2])}")
        lines.append(f"{REQUEST_LATENCY}_count{labels} {values[-1]}")
    lines.append(f"# TYPE {REQUEST_LOG_COUNT} counter")
    for (model_name, status_code), count in sorted(log_counts.items()):
        labels = _label_text(model_name=model_name, status_code=status_code)
        lines.append(f"{REQUEST_LOG_COUNT}{labels} {count}")
    lines.append(f"# TYPE {REQUEST_LOG_BYTES} counter")
    for model_name, count in sorted(log_bytes.items()):
        lines.append(f"{REQUEST_LOG_BYTES}{_label_text(model_name=model_name)} {count}")
    return "\n".join(lines) + "\n"
