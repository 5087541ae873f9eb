"""Keeps what the loaded models allocated out of Python's full garbage collections.

TensorFlow and a loaded SavedModel leave hundreds of thousands of objects on the Python
heap that live as long as the version serves. A full collection walks all of them (160-200
ms on the 2-core benchmark machine) and comes every ~16,000 REST requests, holding the
interpreter lock throughout; frozen (gc.freeze), they are skipped, and a full collection
takes well under a millisecond. Frozen objects are never collected, so each change of the
loaded versions unfreezes, collects once (what an unloaded version left behind too) and
freezes again.
"""
import gc
import logging
import threading
import time

log = logging.getLogger("serving.heap")

_lock = threading.Lock()


def settle() -> None:
    """After versions were loaded or unloaded: one full collection, then everything that
    survives it is frozen. Costs one full collection's pause, as often as versions change."""
    with _lock:
        started = time.monotonic()
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        log.debug("Froze %d objects after a change of the loaded versions in %.0f ms",
                  gc.get_freeze_count(), (time.monotonic() - started) * 1000)
