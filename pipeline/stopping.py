"""SIGTERM and Ctrl-C: stop between runs, or abandon the run under way.

Between runs a signal only sets a flag (the watcher exits at its next look).
During a run it raises StopRequested in the main thread, so the run ends at
once and the runner records it as stopped; nothing is left RUNNING.
"""
import contextlib
import signal
import time

from pipeline.runner import StopRequested


class StopSignals:
    def __init__(self):
        self.requested = False
        self.reason = ""
        self.exit_status = 0  # 128 + the signal's number, the shell's convention
        self._in_run = False

    def install(self):
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True
        self.exit_status = 128 + signum
        self.reason = f"stopped by {signal.Signals(signum).name}"
        if self._in_run:
            self._in_run = False  # raise once; a second signal must not interrupt the cleanup
            raise StopRequested(self.reason)

    @contextlib.contextmanager
    def during_run(self):
        if self.requested:
            raise StopRequested(self.reason)
        self._in_run = True
        try:
            yield
        finally:
            self._in_run = False

    def sleep(self, seconds: float):
        """Sleeps, waking early when a stop is requested."""
        deadline = time.time() + seconds
        while not self.requested and time.time() < deadline:
            time.sleep(min(0.5, deadline - time.time()))
