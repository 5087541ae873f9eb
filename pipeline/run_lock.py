"""One pipeline run at a time per output folder.

An flock on a file in the output folder: the kernel releases it when its
holder dies, even by kill -9, so no crash leaves it stuck. The file says who
holds it, so the one refused can tell the user.
"""
import contextlib
import errno
import fcntl
import json
import os
import pathlib
import socket
import sys
import time

RUN_LOCK = "run.lock"  # held while a pipeline run (or its backfill) runs
WATCH_LOCK = "watch.lock"  # held by a watcher for its whole life


class LockHeld(RuntimeError):
    def __init__(self, path: pathlib.Path, holder: dict):
        self.path, self.holder = path, holder
        super().__init__(f"{path} is held by {describe(holder)}")


def describe(holder: dict) -> str:
    if not holder:
        return "another process (it has not said which yet)"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
    return (f"pid {holder.get('pid')} on {holder.get('host')} since {since} "
            f"({holder.get('purpose')}: {holder.get('command')})")


def holder_of(path: pathlib.Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def hold(path: pathlib.Path, purpose: str, wait: bool = False, on_wait=None):
    """Holds the lock at `path`; raises LockHeld, or waits if `wait`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    acquired = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            if not wait:
                raise LockHeld(path, holder_of(path)) from None
            if on_wait:
                on_wait(holder_of(path))
            fcntl.flock(fd, fcntl.LOCK_EX)
        acquired = True
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({
            "pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
            "purpose": purpose, "command": " ".join(sys.argv)}).encode(), 0)
        yield
    finally:
        if acquired:
            os.ftruncate(fd, 0)
        os.close(fd)  # closing releases the flock
