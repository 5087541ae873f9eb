"""Server-side batching under the Servable: concurrent requests to one signature run as one.

Honours TF Serving's BatchingParameters (max_batch_size, batch_timeout_micros,
num_batch_threads, max_enqueued_batches, allowed_batch_sizes, pad_variable_length_inputs),
with the queue semantics of its SharedBatchScheduler: a batch closes when full or when its
timeout passes, and waits for one of num_batch_threads to run it.
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


def options_from_parameters(params) -> BatchingOptions:
    """BatchingParameters proto -> validated options (TF Serving's defaults when unset)."""
    options = BatchingOptions()
    for field in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches",
                  "num_batch_threads"):
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
    sizes = options.allowed_batch_sizes
    if sizes:
        if any(b <= a for a, b in zip(sizes, sizes[1:])) or sizes[0] <= 0:
            raise errors.invalid_argument(
                "allowed_batch_sizes entries must be monotonically increasing")
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
    def __init__(self, inputs, size):
        self.inputs = inputs
        self.size = size
        self.done = threading.Event()
        self.result = None
        self.error = None


class _Batch:
    def __init__(self):
        self.tasks = []
        self.size = 0
        self.opened_at = time.monotonic()
        self.closed = False


class Batcher:
    """One queue of one signature of one servable, with its own batch threads."""

    def __init__(self, run_fn, name, options: BatchingOptions):
        self._run_fn = run_fn
        self._name = name
        self._options = options
        self._queue = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"batch-{name}-{i}",
                                          daemon=True)
                         for i in range(options.num_batch_threads)]
        for thread in self._threads:
            thread.start()

    # --- the caller's side ----------------------------------------------------------------
    def run(self, inputs: dict, deadline=None) -> dict:
        size = self._task_size(inputs)
        options = self._options
        if size > options.max_batch_size:
            raise errors.invalid_argument(
                f"Task size {size} is larger than maximum input batch size "
                f"{options.max_batch_size}")
        with self._cond:
            closed = self._closed
        if closed:
            # Unloaded after the caller took this version: run it alone, as the
            # version stays usable for requests already holding it.
            return self._run_fn(inputs)
        task = _Task(inputs, size)
        with self._cond:
            open_batch = self._queue[-1] if self._queue else None
            if open_batch is None or open_batch.closed or \
                    open_batch.size + size > options.max_batch_size:
                if open_batch is not None:
                    open_batch.closed = True
                if len(self._queue) >= options.max_enqueued_batches:
                    raise errors.unavailable(
                        "The batch scheduling queue to which this task was submitted is full")
                open_batch = _Batch()
                self._queue.append(open_batch)
            open_batch.tasks.append(task)
            open_batch.size += size
            if open_batch.size >= options.max_batch_size:
                open_batch.closed = True
            self._cond.notify_all()
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not task.done.wait(timeout):
            from serving.servable import DEADLINE_MESSAGE

            raise errors.deadline_exceeded(DEADLINE_MESSAGE)
        if task.error is not None:
            raise task.error
        return task.result

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
                    self._cond.wait(timeout - waited)
                elif self._closed:
                    return None
                else:
                    self._cond.wait()

    def _work(self):
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._process(batch)
            except Exception as e:  # never lose a batch thread; fail its tasks instead
                error = e if isinstance(e, errors.ServingError) else errors.internal(str(e))
                for task in batch.tasks:
                    if not task.done.is_set():
                        task.error = error
                        task.done.set()

    def _process(self, batch):
        tasks = batch.tasks
        names = list(tasks[0].inputs)
        padded_size = self._padded_size(batch.size)
        merged = {}
        for name in names:
            merged[name] = self._concatenate([task.inputs[name] for task in tasks])
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
        for task in tasks:
            task.result = {alias: array[start:start + task.size]
                           for alias, array in outputs.items()}
            start += task.size
            task.done.set()

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
