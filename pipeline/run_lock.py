"""One pipeline run at a time per metadata store.

With SQLite, an flock on a file in the output folder; with a PostgreSQL or
MySQL store, a lock held by a session of that database server
(metadata/database_lock.py), so that watchers and people on other machines
sharing the store are kept apart too. Either dies with its holder, even by
kill -9, so no crash leaves it stuck; and either says who holds it, so the one
refused can tell the user.
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
    def __init__(self, where: str | os.PathLike, holder: dict, name: str):
        # name: RUN_LOCK, WATCH_LOCK...; where: the lock file's folder, or the store.
        self.where, self.holder, self.name = str(where), holder, name
        super().__init__(f"{name} of {self.where} is held by {describe(holder)}")


def describe(holder: dict) -> str:
    if not holder:
        return "another process (it has not said which yet)"
    text = f"pid {holder.get('pid')} on {holder.get('host')}"
    if holder.get("since"):
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder["since"]))
        text += f" since {since}"
    if holder.get("purpose"):
        text += f" ({holder['purpose']}: {holder.get('command')})"
    return text


def this_process(purpose: str) -> dict:
    """What a holder says about itself."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
            "purpose": purpose, "command": " ".join(sys.argv)}


@contextlib.contextmanager
def hold_for_store(cfg, name: str, purpose: str, wait: bool = False, on_wait=None):
    """The lock `name` (RUN_LOCK, WATCH_LOCK) of the pipeline's metadata store:
    in the database for a server store, else a file in the output folder.
    Raises connection.StoreError when the server cannot be reached."""
    from metadata import connection

    config = cfg.metadata_connection
    if not connection.is_server(config):
        with hold(cfg.output_dir / name, purpose, wait, on_wait):
            yield
        return
    from metadata import database_lock
    from pipeline import config as pipeline_config

    # Opening the store first creates its database on a first run, and says
    # what is wrong (server down, password missing) as the commands do.
    connection.open_store(config)
    try:
        with database_lock.hold(config, f"{pipeline_config.PIPELINE_NAME}/{name}",
                                this_process(purpose), wait, on_wait):
            yield
    except database_lock.Busy as busy:
        raise LockHeld(connection.describe(config), busy.holder, name) from None


def holder_of(path: pathlib.Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def hold(path: pathlib.Path, purpose: str, wait: bool = False, on_wait=None):
    """Holds the lock file at `path`; raises LockHeld, or waits if `wait`."""
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
                raise LockHeld(path.parent, holder_of(path), path.name) from None
            if on_wait:
                on_wait(holder_of(path))
            fcntl.flock(fd, fcntl.LOCK_EX)
        acquired = True
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(this_process(purpose)).encode(), 0)
        yield
    finally:
        if acquired:
            os.ftruncate(fd, 0)
        os.close(fd)  # closing releases the flock
