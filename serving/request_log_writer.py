"""The request logger's writer process: builds, serializes and writes PredictionLogs.

It runs in its own interpreter (multiprocessing 'spawn': the server has TensorFlow and gRPC
threads, which fork would copy half-way), so the proto building and TFRecord framing do
not take the server's interpreter lock from its requests. RequestLogger (serving.
request_logging) starts it with two one-way pipes:

- logs: pickled messages from the server, ("logs", active prefixes, [entry, ...]) or
  ("stop",). An entry is (filename prefix, serialized SamplingConfig, kind, model name,
  version, signature name, timestamp, builder name, builder arguments).
- reports: ("counts", [(model name, status code, logs, bytes), ...]) after each flush:
  what the server counts in :tensorflow:serving:request_log_count / _bytes.

The end of the logs pipe (the server is gone) is taken as a stop: what was received is
written before the process exits.
"""
import gc
import logging
import pickle
import signal
import time

from serving import request_logging
from serving.tfrecord_files import RotatingRecordWriter

log = logging.getLogger("serving.request_logging")


def run(logs, reports, server_pid, max_file_bytes, max_file_age_seconds):
    """The process's main function (module level, so that 'spawn' can name it)."""
    # Ctrl-C, and a supervisor's SIGTERM (systemd, docker), reach the whole process group;
    # the server decides when logging stops and sends "stop" after its last logs (or dies,
    # which closes the pipe), so the writer must not go first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    writer = _Writer(reports, server_pid, max_file_bytes, max_file_age_seconds)
    next_flush = time.monotonic() + request_logging.FLUSH_SECONDS
    stopping = frozen = False
    while not stopping:
        try:
            message = pickle.loads(logs.recv_bytes()) \
                if logs.poll(max(0.0, next_flush - time.monotonic())) else None
        except (EOFError, OSError):  # the server is gone: write what came, then exit
            message = ("stop",)
        if message is not None and message[0] == "logs":
            writer.active_prefixes = message[1]
            for entry in message[2]:
                writer.write(*entry)
            if not frozen:
                _freeze_heap()
                frozen = True
        stopping = message is not None and message[0] == "stop"
        if stopping or time.monotonic() >= next_flush:
            writer.flush_all(closing=stopping)
            next_flush = time.monotonic() + request_logging.FLUSH_SECONDS
    reports.close()


def _freeze_heap():
    """Once the first logs are written, and so TensorFlow's protos imported: the objects
    there are now are left out of every later garbage collection. Each batch of logs
    allocates thousands of objects, so collections come often, and a full one walked all
    of TensorFlow's (~100 ms each); nothing there is garbage to collect later."""
    gc.collect()
    gc.freeze()


class _Writer:
    """The files of every filename prefix, and what has been written to them since the
    last report."""

    def __init__(self, reports, server_pid, max_file_bytes, max_file_age_seconds):
        self._reports = reports
        self._server_pid = server_pid
        self._max_file_bytes = max_file_bytes
        self._max_file_age_seconds = max_file_age_seconds
        self.active_prefixes = frozenset()
        self._writers = {}  # filename prefix -> RotatingRecordWriter
        self._unflushed = {}  # prefix -> {model name: [logs, bytes]}
        self._failed = {}  # model name -> logs that could not be built or written
        self._written = {}  # model name -> [logs, bytes] flushed since the last report
        self._reported_errors = set()

    def write(self, prefix, sampling_config, kind, model_name, version, signature_name,
              timestamp, builder_name, arguments):
        try:
            request, response = request_logging.BUILDERS[builder_name](*arguments)
            record = request_logging.prediction_log(
                prefix, sampling_config, kind, model_name, version, signature_name,
                timestamp, request, response)
        except Exception as e:  # a request the protos cannot hold loses its log, not more
            self._report_error(("build", kind, type(e).__name__),
                               f"Could not build the {kind} of model {model_name}: {e!r}")
            self._failed[model_name] = self._failed.get(model_name, 0) + 1
            return
        writer = self._writers.get(prefix)
        if writer is None:
            writer = self._writers[prefix] = RotatingRecordWriter(
                prefix, self._max_file_bytes, self._max_file_age_seconds, self._server_pid)
        size = writer.write(record)
        counts = self._unflushed.setdefault(prefix, {}).setdefault(model_name, [0, 0])
        counts[0] += 1
        counts[1] += size
        if writer.pending_bytes >= request_logging.FLUSH_BYTES:  # a burst goes out early
            self._flush(prefix)

    def flush_all(self, closing=False):
        """Flushes every file, closes those of prefixes no model uses any more, and reports
        the counts to the server."""
        for prefix in list(self._writers):
            self._flush(prefix, close=closing or prefix not in self.active_prefixes)
        counts = [(model, "OK", count, size) for model, (count, size) in self._written.items()]
        counts += [(model, "INTERNAL", count, 0) for model, count in self._failed.items()]
        self._written, self._failed = {}, {}
        if counts:
            try:
                self._reports.send(("counts", counts))
            except OSError:  # the server is gone; the files are written all the same
                pass

    def _flush(self, prefix, close=False):
        writer = self._writers[prefix]
        counts = self._unflushed.pop(prefix, {})
        try:
            writer.close() if close else writer.flush()
            ok = True
        except OSError as e:
            self._report_error(("write", prefix, e.errno),
                               f"Could not write request logs to {prefix}-*: {e}")
            ok = False
        if close:
            del self._writers[prefix]
        for model_name, (count, size) in counts.items():
            if ok:
                written = self._written.setdefault(model_name, [0, 0])
                written[0] += count
                written[1] += size
            else:
                self._failed[model_name] = self._failed.get(model_name, 0) + count

    def _report_error(self, key, message):
        """Logs each kind of failure once: a full disk must not flood the server log."""
        if key not in self._reported_errors:
            self._reported_errors.add(key)
            log.error("%s (further such errors are counted, not logged)", message)
