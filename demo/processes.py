"""The demo's child processes (the watcher, the model server): started with their
output prefixed on this terminal or sent to a file, and always stopped.
"""
import os
import pathlib
import signal
import subprocess
import sys
import threading

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent


def child_environment() -> dict:
    return dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2",
                PYTHONUNBUFFERED="1", PYTHONPATH=str(PROJECT_ROOT))


class Child:
    """One child process. With `prefix`, each line it prints is shown as it comes,
    after the prefix; else its output goes to `log_path`."""

    def __init__(self, args: list[str], prefix: str | None = None,
                 log_path: pathlib.Path | None = None, out=sys.stdout):
        self.args = args
        self._out = out
        if prefix is not None:
            self.process = subprocess.Popen(
                args, cwd=PROJECT_ROOT, env=child_environment(), text=True,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            self._relay = threading.Thread(target=self._relay_lines, args=(prefix,),
                                           daemon=True)
            self._relay.start()
        else:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "wb") as log:
                self.process = subprocess.Popen(args, cwd=PROJECT_ROOT,
                                                env=child_environment(), stdout=log,
                                                stderr=subprocess.STDOUT)
            self._relay = None

    def _relay_lines(self, prefix: str) -> None:
        for line in self.process.stdout:
            print(f"{prefix}{line.rstrip()}", file=self._out, flush=True)

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (the watcher finishes or abandons its run cleanly), then SIGKILL."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._relay is not None:
            self._relay.join(timeout=5)
        return self.process.returncode
