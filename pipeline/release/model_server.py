"""What the model server says about the model, over TF Serving's REST API: the
state of a version, the version a label resolves to, and its Prometheus page.

The REST API and the Prometheus page share a port in TF Serving, so one URL,
the Prometheus page's (--serving-metrics-url), tells where both are.
"""
import time
import urllib.parse

import requests

REQUEST_TIMEOUT_SECONDS = 5


class ServerUnreachable(RuntimeError):
    """Nothing answered at the server's address."""


def rest_base_url(metrics_url: str) -> str:
    """http://host:port of a Prometheus page URL."""
    parts = urllib.parse.urlsplit(metrics_url)
    if not parts.scheme or not parts.netloc:
        raise ValueError(f"{metrics_url!r} is not a URL such as "
                         "http://localhost:8501/monitoring/prometheus/metrics")
    return f"{parts.scheme}://{parts.netloc}"


def _get(url: str) -> requests.Response:
    try:
        return requests.get(url, timeout=REQUEST_TIMEOUT_SECONDS)
    except requests.RequestException as error:
        raise ServerUnreachable(f"no model server answered at {url}: {error}") from None


def version_state(metrics_url: str, model_name: str, version: int) -> tuple[str, str]:
    """(state, error message) of one version: AVAILABLE, LOADING, END... or
    UNKNOWN when the server never saw it."""
    response = _get(f"{rest_base_url(metrics_url)}/v1/models/{model_name}/versions/{version}")
    if response.status_code != 200:
        return "UNKNOWN", ""
    [status] = response.json().get("model_version_status", [{}])[:1] or [{}]
    return status.get("state", "UNKNOWN"), status.get("status", {}).get("error_message", "")


def wait_until_available(metrics_url: str, model_name: str, version: int,
                         timeout: float) -> tuple[str, str]:
    """Polls the version's state until AVAILABLE, a failed load (END) or the
    timeout; returns the last (state, error message)."""
    deadline = time.monotonic() + timeout
    while True:
        state, message = version_state(metrics_url, model_name, version)
        if state in ("AVAILABLE", "END") or time.monotonic() >= deadline:
            return state, message
        time.sleep(0.5)


def label_version(metrics_url: str, model_name: str, label: str) -> int | None:
    """The version a label resolves to in the server now (None: unknown label)."""
    response = _get(f"{rest_base_url(metrics_url)}/v1/models/{model_name}/labels/{label}/metadata")
    if response.status_code != 200:
        return None
    version = response.json().get("model_spec", {}).get("version")
    return int(version) if version is not None else None


def wait_until_labels_applied(metrics_url: str, model_name: str, labels: dict,
                              timeout: float) -> bool:
    """Whether the server resolves every label to its version within the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if all(label_version(metrics_url, model_name, label) == version
               for label, version in labels.items()):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)


def prometheus_page(metrics_url: str) -> str:
    response = _get(metrics_url)
    if response.status_code != 200:
        raise ServerUnreachable(
            f"{metrics_url} answered HTTP {response.status_code}: is the server running "
            "with --monitoring_config_file (prometheus_config { enable: true })?")
    return response.text
