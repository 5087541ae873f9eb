"""Rotating TFRecord files under one name prefix, written so that readers never see half a record.

Records are framed here in TensorFlow's record format and kept in memory until flush(), which
appends them with one write: the file on disk only ever grows by whole records, so any TFRecord
reader can read it while the server runs. (tf.io.TFRecordWriter buffers inside TensorFlow and
can leave a partial record on disk until its next flush.) CRC32C comes from google-crc32c,
already pinned for the Google Cloud clients.
"""
import datetime
import os
import struct
import time

import google_crc32c

MAX_FILE_BYTES = 64 * 1024 * 1024  # a file is closed and the next one started past this
MAX_FILE_AGE_SECONDS = 3600  # ... or once it has been open this long
SUFFIX = ".tfrecord"
_CRC_MASK_DELTA = 0xA282EAD8
_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")


def _masked_crc(data: bytes) -> bytes:
    """TFRecord's masked CRC32C: rotated and offset, so a CRC of CRCs does not look valid."""
    crc = google_crc32c.value(data)
    return _CRC.pack((((crc >> 15) | (crc << 17)) + _CRC_MASK_DELTA) & 0xFFFFFFFF)


def frame(record: bytes) -> bytes:
    """One record as it sits in a TFRecord file (uncompressed)."""
    length = _LENGTH.pack(len(record))
    return b"".join((length, _masked_crc(length), record, _masked_crc(record)))


def file_name(prefix: str, opened_at: float, sequence: int, pid: int = None) -> str:
    """<prefix>-<UTC time the file was opened, YYYYMMDDTHHMMSS>-<pid>-<sequence>.tfrecord

    pid: the server's (a writer process names files after the server it writes for);
    this process's by default."""
    stamp = datetime.datetime.fromtimestamp(opened_at, datetime.timezone.utc)
    pid = os.getpid() if pid is None else pid
    return f"{prefix}-{stamp:%Y%m%dT%H%M%S}-{pid}-{sequence:05d}{SUFFIX}"


class RotatingRecordWriter:
    """Appends records to <prefix>-...tfrecord files; not thread-safe (one writer owns it).

    A file is opened on the first record after a rotation, so no empty files are left.
    """

    def __init__(self, prefix: str, max_file_bytes: int = MAX_FILE_BYTES,
                 max_file_age_seconds: float = MAX_FILE_AGE_SECONDS, pid: int = None):
        self.prefix = prefix
        self.pid = pid
        self.max_file_bytes = max(1, max_file_bytes)
        self.max_file_age_seconds = max_file_age_seconds
        self.paths = []  # every file this writer opened, in order
        self._fd = None
        self._opened_at = 0.0
        self._file_bytes = 0  # written to the current file
        self._pending = []  # framed records not yet written
        self._pending_bytes = 0
        self._sequence = 0

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    def write(self, record: bytes) -> int:
        """Buffers one record (no I/O); -> the bytes it takes in the file."""
        framed = frame(record)
        self._pending.append(framed)
        self._pending_bytes += len(framed)
        return len(framed)

    def flush(self) -> None:
        """Appends the buffered records, one write per file: a file that would grow past
        max_file_bytes is closed first and the next one opened, and a file open longer than
        max_file_age_seconds is closed afterwards. Raises OSError; the buffered records are
        dropped either way, so a failing disk cannot grow memory without bound."""
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        chunk, chunk_bytes = [], 0
        for framed in pending:
            used = self._file_bytes + chunk_bytes
            if used and used + len(framed) > self.max_file_bytes:
                self._append(chunk)
                self._close_file()
                chunk, chunk_bytes = [], 0
            chunk.append(framed)
            chunk_bytes += len(framed)
        self._append(chunk)
        if self._fd is not None and time.time() - self._opened_at >= self.max_file_age_seconds:
            self._close_file()

    def _append(self, framed_records):
        if not framed_records:
            return
        if self._fd is None:
            self._open_file()
        data = b"".join(framed_records)
        view = memoryview(data)
        while view:  # os.write may write less than asked
            view = view[os.write(self._fd, view):]
        self._file_bytes += len(data)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._close_file()

    def _open_file(self):
        folder = os.path.dirname(self.prefix)
        if folder:
            os.makedirs(folder, exist_ok=True)
        while True:
            self._opened_at = time.time()
            path = file_name(self.prefix, self._opened_at, self._sequence, self.pid)
            self._sequence += 1
            try:  # O_EXCL: never append to a file another process (or run) left there
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND,
                                   0o644)
                break
            except FileExistsError:
                continue
        self._file_bytes = 0
        self.paths.append(path)

    def _close_file(self):
        if self._fd is not None:
            fd, self._fd, self._file_bytes = self._fd, None, 0
            os.close(fd)
