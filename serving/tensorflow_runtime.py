"""Imports TensorFlow without the start-up noise its pip wheel prints on a CPU machine.

`import tensorflow` (2.16) writes about ten lines to stderr that a user of a CPU server
cannot act on: CUDA drivers not found, cuFFT/cuDNN/cuBLAS factories registered twice,
no TensorRT, the oneDNN and CPU-instruction notices. While TensorFlow imports, stderr
goes through a filter process that drops exactly those lines and passes every other
byte on, so a real error (or a crash's last words) still reaches the user. A user who
sets TF_CPP_MIN_LOG_LEVEL has chosen TensorFlow's verbosity: then nothing is filtered.

This file run as a script is that filter: stdin -> stderr, noise dropped.
"""
import os
import re
import subprocess
import sys
import warnings

# One pattern per line of noise; a line is dropped only when one of them matches it.
KNOWN_NOISE = tuple(re.compile(pattern) for pattern in (
    r"\] oneDNN custom operations are on\. ",
    r"\] Could not find cuda drivers on your machine, GPU will not be used\.$",
    r"\] Unable to register cu(FFT|DNN|BLAS) factory: Attempting to register factory for "
    r"plugin cu(FFT|DNN|BLAS) when one has already been registered$",
    r"\] This TensorFlow binary is optimized to use available CPU instructions in "
    r"performance-critical operations\.$",
    r"^To enable the following instructions: .*, in other operations, rebuild TensorFlow "
    r"with the appropriate compiler flags\.$",
    r"\] TF-TRT Warning: Could not find TensorRT$",
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to "
    r"STDERR$",
    r"\] MLIR V1 optimization pass is not enabled$",
))
FILTER_EXIT_TIMEOUT_SECONDS = 10


def is_noise(line: str) -> bool:
    line = line.rstrip("\r\n")
    return any(pattern.search(line) for pattern in KNOWN_NOISE)


def import_tensorflow():
    """`import tensorflow`, with the known start-up noise dropped unless the user set
    TF_CPP_MIN_LOG_LEVEL; returns the module."""
    if "tensorflow" not in sys.modules and "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
        # google-api-core (imported by TensorFlow) warns that Python 3.10 is old; this
        # project pins 3.10 for TFX 1.16, so the user can do nothing about it.
        warnings.filterwarnings("ignore", category=FutureWarning,
                                message="You are using a non-supported Python version")
        with _stderr_filtered():
            import tensorflow

            _run_first_session(tensorflow)
    import tensorflow as tf

    return tf


def _run_first_session(tf):
    """TensorFlow logs an MLIR notice on the first session run of a process; models load
    and run in sessions, so take that run here, where the notice is filtered."""
    graph = tf.Graph()
    with graph.as_default():
        two = tf.constant(2.0)
    with tf.compat.v1.Session(graph=graph) as session:
        session.run(two)


class _stderr_filtered:
    """Sends file descriptor 2 through this file, run as a filter script, meanwhile.

    A separate process, not a thread, does the filtering: if TensorFlow aborts the
    process during the import, the filter still reads and forwards what it wrote.
    """

    def __enter__(self):
        self._saved_stderr = self._filter = None
        try:
            sys.stderr.flush()
            self._saved_stderr = os.dup(2)
            self._filter = subprocess.Popen(
                # Isolated and without site-packages: the filter needs only the standard
                # library, whatever sys.path the server was started with.
                [sys.executable, "-I", "-S", os.path.abspath(__file__)], stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, stderr=self._saved_stderr)
            os.dup2(self._filter.stdin.fileno(), 2)
        except (OSError, ValueError):
            # No usable stderr (a closed fd 2, a replaced sys.stderr): import unfiltered.
            self._restore()
        return self

    def __exit__(self, *exc_info):
        self._restore()
        return False

    def _restore(self):
        if self._saved_stderr is None:
            return
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self._saved_stderr, 2)
        os.close(self._saved_stderr)
        self._saved_stderr = None
        if self._filter is not None:
            # Closing our end of the pipe ends the filter once it has forwarded everything,
            # so the lines TensorFlow wrote appear before the server's own.
            self._filter.stdin.close()
            try:
                self._filter.wait(timeout=FILTER_EXIT_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self._filter.kill()
            self._filter = None


def filter_stream(source, destination) -> None:
    """Copies lines from source to destination (binary streams), dropping known noise."""
    for line in source:
        if not is_noise(line.decode("utf-8", errors="replace")):
            destination.write(line)
            destination.flush()


if __name__ == "__main__":
    filter_stream(sys.stdin.buffer, sys.stderr.buffer)
