"""The demo's client: sends taxi trips to the model server, as an application would,
and counts every answer per label (stable, canary) and per version that answered.

It speaks plain REST (`requests`, no TensorFlow) to TF Serving's
`/v1/models/NAME/labels/LABEL:predict` on the `serving_raw` signature, so what it
sees is what any client of a real `tensorflow_model_server` would see.
"""
import collections
import csv
import dataclasses
import itertools
import random
import threading
import time

import requests

from models import features

# A share of the requests goes to the canary; the rest to the stable version.
CANARY_SHARE = 0.25


def _typed(text: str):
    """A CSV cell as the JSON value the signature takes: int, float or string."""
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text


def read_instances(csv_path) -> list[dict]:
    """The trips of a span that have every raw feature, as `instances` rows."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{name: _typed(row[name]) for name in features.RAW_FEATURES}
            for row in rows if all(row.get(name) for name in features.RAW_FEATURES)]


@dataclasses.dataclass
class Tally:
    """Answers by label; failures keep their last message for the final report."""
    ok: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    failed: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    last_error: dict = dataclasses.field(default_factory=dict)

    def total_failed(self) -> int:
        return sum(self.failed.values())

    def describe(self) -> str:
        parts = [f"{label} {self.ok[label]:,} ok" + (f", {self.failed[label]} failed"
                                                       if self.failed[label] else "")
                 for label in sorted(set(self.ok) | set(self.failed))]
        return "; ".join(parts) or "no requests yet"


class TrafficClient:
    """A few threads that each send one small predict after another, at a gentle
    rate, so the demo's pipeline keeps most of the machine."""

    def __init__(self, rest_port: int, model_name: str, instances: list[dict],
                 requests_per_second: float = 20.0, threads: int = 2,
                 batch_size: int = 4):
        self._url = f"http://127.0.0.1:{rest_port}/v1/models/{model_name}/labels"
        self._instances = instances
        self._gap = threads / requests_per_second
        self._threads = [threading.Thread(target=self._send_loop, args=(seed,), daemon=True,
                                          name=f"demo-client-{seed}")
                         for seed in range(threads)]
        self._batch_size = batch_size
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.tally = Tally()

    def start(self) -> "TrafficClient":
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> Tally:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        return self.tally

    def _send_loop(self, seed: int) -> None:
        chooser = random.Random(seed)
        rows = itertools.cycle(self._instances)
        session = requests.Session()
        while not self._stop.is_set():
            label = "canary" if chooser.random() < CANARY_SHARE else "stable"
            body = {"signature_name": "serving_raw",
                    "instances": [next(rows) for _ in range(self._batch_size)]}
            started = time.monotonic()
            try:
                response = session.post(f"{self._url}/{label}:predict", json=body, timeout=30)
                error = None if response.status_code == 200 else (
                    f"HTTP {response.status_code}: {response.text[:200]}")
            except requests.RequestException as failure:
                error = f"{type(failure).__name__}: {failure}"
            with self._lock:
                if error is None:
                    self.tally.ok[label] += 1
                else:
                    self.tally.failed[label] += 1
                    self.tally.last_error[label] = error
            self._stop.wait(max(0.0, self._gap - (time.monotonic() - started)))
        session.close()
