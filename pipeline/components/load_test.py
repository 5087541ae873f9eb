"""A short load test of a running model server: requests at a fixed rate for a
few seconds, each sent on schedule whether or not earlier ones have answered
(so a slow server shows as latency, not as fewer requests), then p50/p99 and
failures judged against the targets in pipeline/config.py.
"""
import dataclasses
import itertools
import threading
import time

import grpc
import numpy as np
from tensorflow_serving.apis import prediction_service_pb2_grpc

from pipeline.components.infra_failure import InfraValidationFailed
from pipeline.components.signature_checks import send_async


@dataclasses.dataclass
class LoadResult:
    rate: float  # requests per second, as scheduled
    seconds: float
    requests: int
    failed: int
    p50_ms: float | None  # over answered requests; None if none answered
    p99_ms: float | None
    first_error: str = ""

    def judge(self, p99_target_ms: float, max_failed: int) -> None:
        """Raises InfraValidationFailed if the server missed a target."""
        if self.failed > max_failed:
            raise InfraValidationFailed(
                f"{self.failed} of {self.requests} requests failed under load at "
                f"{self.rate:g} req/s (at most {max_failed} allowed); first: {self.first_error}")
        if self.p99_ms is not None and self.p99_ms > p99_target_ms:
            raise InfraValidationFailed(
                f"p99 latency {self.p99_ms:.1f} ms at {self.rate:g} req/s is above the "
                f"target {p99_target_ms:g} ms (p50 {self.p50_ms:.1f} ms); raise "
                f"infra_p99_target_ms (--infra-p99-target-ms) if that is acceptable")


def run(channel, requests: list, rate: float, seconds: float,
        timeout_seconds: float) -> LoadResult:
    """Sends `rate * seconds` requests, cycling through `requests`, and waits for
    every answer (or its deadline)."""
    if not requests or rate <= 0 or seconds <= 0:
        raise ValueError("a load test needs requests, a rate above 0 and a duration above 0")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    latencies, errors = [], []
    answers = threading.Condition()
    count = max(1, round(rate * seconds))

    def record(future, sent):  # runs on a gRPC thread when the answer or deadline comes
        elapsed = time.perf_counter() - sent
        error = future.exception()
        with answers:
            if error is None:
                latencies.append(elapsed * 1000)
            else:
                errors.append(f"{error.code().name} {error.details()}"
                              if isinstance(error, grpc.RpcError) else repr(error))
            answers.notify()

    start = time.perf_counter()
    for index, request in zip(range(count), itertools.cycle(requests)):
        delay = start + index / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sent = time.perf_counter()
        send_async(stub, request, timeout_seconds).add_done_callback(
            lambda future, sent=sent: record(future, sent))
    with answers:  # every request ends by its own deadline at the latest
        answers.wait_for(lambda: len(latencies) + len(errors) == count,
                         timeout=timeout_seconds + 5)
        answered, failed = list(latencies), list(errors)
    percentile = (lambda q: float(np.percentile(answered, q))) if answered else (lambda q: None)
    return LoadResult(rate=rate, seconds=seconds, requests=count, failed=count - len(answered),
                      p50_ms=percentile(50), p99_ms=percentile(99),
                      first_error=failed[0] if failed else "")
