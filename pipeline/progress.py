"""One line per pipeline step for people; the full TFX, Beam and TensorFlow
logs to a file.

TFX reports progress only as log records, so the printer reads those; the
redirection catches C++ output too, which Python's logging never sees.
"""
import contextlib
import os
import pathlib
import re
import sys
import time


class ProgressPrinter:
    """Turns TFX's log records into one line per component for people."""

    def __init__(self, out):
        self.out = out
        self.label = ""  # says which span a backfill run ingests
        self.node, self.started, self.status = None, 0.0, ""

    def say(self, text: str):
        print(text, file=self.out, flush=True)

    def handle(self, message: str):
        if match := re.match(r"Component (\S+) is running\.", message):
            self.node, self.started, self.status = match.group(1), time.time(), "resolved"
        elif message.startswith("A cached execution"):
            self.status = "cached"
        elif message.startswith("Going to run a new execution"):
            self.status = "ran"
        elif message.startswith("Skipping execution"):
            self.status = "skipped"
        elif re.match(r"Component (\S+) is finished\.", message):
            self.finish(self.status)

    def finish(self, status):
        if self.node is None:
            return
        seconds = time.time() - self.started
        self.say(f"  {self.node + self.label:<32} {status:<9} {seconds:7.1f}s")
        self.node = None


@contextlib.contextmanager
def logs_to_file(log_path: pathlib.Path, progress: ProgressPrinter):
    """Send stdout/stderr (Python and C++) and absl logs to the log file."""
    import logging

    from absl import logging as absl_logging

    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = open(log_path, "a", buffering=1)
    sys.stdout.flush(), sys.stderr.flush()
    saved_fds = os.dup(1), os.dup(2)
    console = progress.out
    if console is sys.stdout:  # keep talking to the terminal
        progress.out = os.fdopen(os.dup(saved_fds[0]), "w", buffering=1)
    os.dup2(log_file.fileno(), 1)
    os.dup2(log_file.fileno(), 2)

    class Relay(logging.Handler):
        def emit(self, record):
            progress.handle(record.getMessage())

    relay = Relay()
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.INFO)
    logging.getLogger("absl").addHandler(relay)
    try:
        yield
    finally:
        logging.getLogger("absl").removeHandler(relay)
        absl_logging.set_verbosity(verbosity)  # a watcher's console stays quiet between runs
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        for fd in saved_fds:
            os.close(fd)
        if progress.out is not console:
            progress.out.close()
            progress.out = console
        log_file.close()


def stderr_to_file(log_path: pathlib.Path):
    """From here on, C++ and Python stderr go to the log: TensorFlow prints
    harmless tracebacks from its destructors while the interpreter exits."""
    sys.stderr.flush()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log_file:
        os.dup2(log_file.fileno(), 2)
