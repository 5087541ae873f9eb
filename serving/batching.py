"""Server-side batching under the Servable: concurrent requests to one signature run as one.

Honours TF Serving's BatchingParameters (max_batch_size, batch_timeout_micros,
num_batch_threads, max_enqueued_batches, allowed_batch_sizes, pad_variable_length_inputs),
enable_large_batch_splitting and max_execution_batch_size, with the queue semantics of its
SharedBatchScheduler: a batch closes when full or when its timeout passes, and waits for
one of num_batch_threads to run it. With splitting, max_batch_size bounds one request and
max_execution_batch_size one run of the graph: a request that does not fit the open batch
fills it and goes on in the next ones.
"""
import collections
import dataclasses
import logging
import os
import threading
import time

import numpy as np

from serving import errors

log = logging.getLogger("serving.batching")


@dataclasses.dataclass
class BatchingOptions:
    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = os.cpu_count() or 1
    allowed_batch_sizes: tuple = ()
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = False
    # 0: max_batch_size. Only read with enable_large_batch_splitting, as in TF Serving.
    max_execution_batch_size: int = 0

    @property
    def execution_batch_limit(self) -> int:
        """The most rows one run of the graph gets; max_batch_size stays the limit of
        one request (TF Serving's input_batch_size_limit)."""
        if self.enable_large_batch_splitting and self.max_execution_batch_size:
            return self.max_execution_batch_size
        return self.max_batch_size


def options_from_parameters(params) -> BatchingOptions:
    """BatchingParameters proto -> validated options (TF Serving's defaults when unset)."""
    options = BatchingOptions()
    for field in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches",
                  "num_batch_threads", "max_execution_batch_size"):
        if params.HasField(field):
            setattr(options, field, getattr(params, field).value)
    if params.HasField("enable_large_batch_splitting"):
        options.enable_large_batch_splitting = params.enable_large_batch_splitting.value
    options.allowed_batch_sizes = tuple(params.allowed_batch_sizes)
    options.pad_variable_length_inputs = params.pad_variable_length_inputs
    validate(options)
    return options


def validate(options: BatchingOptions):
    if options.max_batch_size <= 0:
        raise errors.invalid_argument("max_batch_size must be positive")
    if options.num_batch_threads <= 0:
        raise errors.invalid_argument("num_batch_threads must be positive")
    if options.max_enqueued_batches <= 0:
        raise errors.invalid_argument("max_enqueued_batches must be positive")
    if options.batch_timeout_micros < 0:
        raise errors.invalid_argument("batch_timeout_micros must be non-negative")
    if options.max_execution_batch_size < 0:
        raise errors.invalid_argument("max_execution_batch_size must be positive")
    sizes = options.allowed_batch_sizes
    if sizes:
        if any(b <= a for a, b in zip(sizes, sizes[1:])) or sizes[0] <= 0:
            raise errors.invalid_argument(
                "allowed_batch_sizes entries must be monotonically increasing")
        # TF Serving's server checks this against max_batch_size with or without
        # splitting (a split batch is padded up to the next allowed size).
        if sizes[-1] != options.max_batch_size:
            raise errors.invalid_argument(
                "final entry in allowed_batch_sizes must equal max_batch_size when "
                "enable_large_batch_splitting is False")


def batcher_factory(params):
    """The Servable's hook: returns make(run_fn, name) -> Batcher, sharing one option set."""
    options = options_from_parameters(params)
    log.info("Batching enabled: %s", options)

    def make(run_fn, name):
        return Batcher(run_fn, name, options)

    return make


class _Task:
    """One request. With large batch splitting its rows may run in several batches; it
    is done when every piece has its outputs."""

    __slots__ = ("inputs", "size", "done", "on_done", "pieces", "pending", "result",
                 "error")

    def __init__(self, inputs, size, on_done=None):
        self.inputs = inputs
        self.size = size
        # A lock held until the outputs are in: cheaper to hand over than an Event.
        self.done = threading.Lock()
        self.done.acquire()
        # Called on the batch thread once result or error is set (an event loop's waker).
        self.on_done = on_done
        self.pieces = {}  # first row -> outputs of rows [first row, first row + piece size)
        self.pending = 0  # pieces not yet run; guarded by the Batcher's condition
        self.result = None
        self.error = None

    def finish(self):
        self.done.release()
        if self.on_done is not None:
            self.on_done()


class _Batch:
    __slots__ = ("pieces", "size", "opened_at", "closed")

    def __init__(self):
        self.pieces = []  # (task, first row, row count)
        self.size = 0
        self.opened_at = time.monotonic()
        self.closed = False


class Batcher:
    """One queue of one signature of one servable, with its own batch threads."""

    def __init__(self, run_fn, name, options: BatchingOptions):
        self._run_fn = run_fn
        self._name = name
        self._options = options
        self._limit = options.execution_batch_limit
        self._queue = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._idle_threads = 0  # batch threads waiting for work: who needs a wake-up
        self._threads = [threading.Thread(target=self._work, name=f"batch-{name}-{i}",
                                          daemon=True)
                         for i in range(options.num_batch_threads)]
        for thread in self._threads:
            thread.start()

    # --- the caller's side ----------------------------------------------------------------
    def run(self, inputs: dict, deadline=None) -> dict:
        task = self.submit(inputs)
        if task is None:
            # Unloaded after the caller took this version: run it alone, as the version
            # stays usable for requests already holding it.
            return self._run_fn(inputs)
        timeout = -1 if deadline is None else max(0.0, deadline - time.monotonic())
        if not task.done.acquire(timeout=timeout):
            raise errors.deadline_exceeded()
        if task.error is not None:
            raise task.error
        return task.result

    def submit(self, inputs: dict, on_done=None):
        """Queues one request without waiting: its _Task (result or error set, then
        on_done() called, on a batch thread), or None once closed (the caller runs it
        alone). Raises what TF Serving's scheduler refuses with."""
        size = self._task_size(inputs)
        options = self._options
        if size > options.max_batch_size:
            raise errors.invalid_argument(
                f"Task size {size} is larger than maximum input batch size "
                f"{options.max_batch_size}")
        task = _Task(inputs, size, on_done)
        with self._cond:
            if self._closed:
                return None
            if options.enable_large_batch_splitting:
                self._enqueue_split(task)
            else:
                self._enqueue_whole(task)
            if self._idle_threads:
                self._cond.notify()
        return task

    def _open_batch(self):
        """The batch new rows join, or a new one; the caller holds the condition."""
        tail = self._queue[-1] if self._queue else None
        if tail is not None and not tail.closed:
            return tail
        tail = _Batch()
        self._queue.append(tail)
        return tail

    def _enqueue_whole(self, task):
        tail = self._queue[-1] if self._queue else None
        if tail is not None and not tail.closed and tail.size + task.size > self._limit:
            tail.closed = True
        if (tail is None or tail.closed) and \
                len(self._queue) >= self._options.max_enqueued_batches:
            raise errors.unavailable(
                "The batch scheduling queue to which this task was submitted is full")
        self._add_piece(self._open_batch(), task, 0, task.size)

    def _enqueue_split(self, task):
        """TF Serving's large batch splitting: the task's first rows fill the open
        batch, the rest go to new batches of up to max_execution_batch_size rows."""
        tail = self._queue[-1] if self._queue else None
        is_open = tail is not None and not tail.closed
        open_rows = tail.size if is_open else 0
        # As TF Serving counts it: room in the open batch plus the batches still allowed.
        capacity = (self._options.max_enqueued_batches - len(self._queue)) * self._limit + (
            self._limit - open_rows if is_open else 0)
        if task.size > capacity:
            raise errors.unavailable(
                "The batch scheduling queue to which this task was submitted is full; task "
                f"size is {task.size} but scheduling capacity is only {capacity} "
                f"(num_enqueued_batches={len(self._queue)}, max_enqueued_batches="
                f"{self._options.max_enqueued_batches}, open_batch_size={open_rows}, "
                f"max_execution_batch_size={self._limit})")
        if task.size == 0:  # nothing to split; it still gets its (empty) outputs
            self._add_piece(self._open_batch(), task, 0, 0)
            return
        first = 0
        while first < task.size:
            batch = self._open_batch()
            rows = min(task.size - first, self._limit - batch.size)
            self._add_piece(batch, task, first, rows)
            first += rows

    def _add_piece(self, batch, task, first, rows):
        batch.pieces.append((task, first, rows))
        batch.size += rows
        task.pending += 1
        if batch.size >= self._limit:
            batch.closed = True

    @staticmethod
    def _task_size(inputs) -> int:
        sizes = set()
        for array in inputs.values():
            if np.ndim(array) == 0:
                raise errors.invalid_argument(
                    "Batching session Run() input tensors must have at least one dimension")
            sizes.add(np.shape(array)[0])
        if len(sizes) > 1:
            raise errors.invalid_argument(
                "Batching session Run() input tensors must have equal 0th-dimension size")
        return sizes.pop() if sizes else 0

    def close(self):
        """Refuse new tasks, finish the queued ones, then let the threads end, so an
        unloaded version (held by run_fn) can be freed."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # --- the batch threads ------------------------------------------------------------------
    def _next_batch(self):
        """The next batch to run, or None once closed and drained."""
        timeout = self._options.batch_timeout_micros / 1e6
        with self._cond:
            while True:
                if self._queue:
                    batch = self._queue[0]
                    waited = time.monotonic() - batch.opened_at
                    if batch.closed or self._closed or len(self._queue) > 1 \
                            or waited >= timeout:
                        return self._queue.popleft()
                    wait = timeout - waited
                elif self._closed:
                    return None
                else:
                    wait = None
                self._idle_threads += 1
                self._cond.wait(wait)
                self._idle_threads -= 1

    def _work(self):
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._process(batch)
            except Exception as e:  # never lose a batch thread; fail its tasks instead
                error = e if isinstance(e, errors.ServingError) else errors.internal(str(e))
                for task, _, _ in batch.pieces:
                    self._fail(task, error)

    def _process(self, batch):
        pieces = batch.pieces
        padded_size = self._padded_size(batch.size)
        merged = {}
        for name in pieces[0][0].inputs:
            merged[name] = self._concatenate([
                task.inputs[name] if rows == task.size
                else task.inputs[name][first:first + rows]
                for task, first, rows in pieces])
            if padded_size > batch.size:
                # Pad up to an allowed batch size with copies of the first row.
                filler = np.repeat(merged[name][:1], padded_size - batch.size, axis=0)
                merged[name] = np.concatenate([merged[name], filler])
        outputs = self._run_fn(merged)
        for alias, array in outputs.items():
            if np.ndim(array) == 0 or np.shape(array)[0] != padded_size:
                raise errors.failed_precondition(
                    "Batched output tensor's 0th dimension does not equal the sum of the 0th "
                    f"dimension sizes of the input tensors (output {alias})")
        start = 0
        for task, first, rows in pieces:
            piece = {alias: array[start:start + rows] for alias, array in outputs.items()}
            start += rows
            if rows == task.size:  # the usual case: the whole task ran in this batch
                task.result = piece
                task.finish()
            else:
                self._finish_piece(task, first, piece)

    def _finish_piece(self, task, first, piece):
        """Keeps a split task's piece; the last one in puts the rows back in order."""
        with self._cond:
            task.pieces[first] = piece
            task.pending -= 1
            if task.pending or task.error is not None:
                return
        parts = [task.pieces[key] for key in sorted(task.pieces)]
        task.result = {alias: np.concatenate([part[alias] for part in parts])
                       for alias in parts[0]}
        task.finish()

    def _fail(self, task, error):
        with self._cond:
            if task.error is not None or task.result is not None:
                return
            task.error = error
        task.finish()

    def _padded_size(self, size: int) -> int:
        for allowed in self._options.allowed_batch_sizes:
            if allowed >= size:
                return allowed
        return size

    def _concatenate(self, arrays):
        shapes = {np.shape(a)[1:] for a in arrays}
        if len(shapes) > 1:
            if not self._options.pad_variable_length_inputs:
                raise errors.invalid_argument(
                    "Tensors with different shapes cannot be batched; shapes: "
                    + ", ".join(str(list(np.shape(a))) for a in arrays)
                    + ". Set pad_variable_length_inputs to pad them.")
            ranks = {len(s) for s in shapes}
            if len(ranks) > 1:
                raise errors.invalid_argument(
                    "Cannot pad tensors of different ranks for batching")
            target = [max(dims) for dims in zip(*shapes)]
            arrays = [self._pad(a, target) for a in arrays]
        return np.concatenate(arrays, axis=0)

    @staticmethod
    def _pad(array, target):
        widths = [(0, 0)] + [(0, t - d) for d, t in zip(np.shape(array)[1:], target)]
        if all(w == (0, 0) for w in widths):
            return array
        # TF Serving pads with the tensor's first element.
        fill = array.flat[0] if array.size else 0
        padded = np.full([np.shape(array)[0]] + list(target), fill, dtype=array.dtype)
        padded[tuple(slice(0, d) for d in np.shape(array))] = array
        return padded
