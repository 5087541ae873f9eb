"""serving.heap: the loaded models' objects kept out of full garbage collections (a cost the
request logger's queue made more frequent), and the manager settling the heap whenever the
loaded versions change. No TensorFlow here: the servables are stand-ins for what a
servable_factory returns, since only their loading and unloading matter."""
import gc
import weakref
from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving import heap
from serving.manager import ModelManager


class _Cycle:
    def __init__(self):
        self.me = self


def test_settle_collects_garbage_first_and_freezes_the_rest():
    garbage, kept = _Cycle(), _Cycle()
    gone = weakref.ref(garbage)
    del garbage
    try:
        heap.settle()
        assert gone() is None  # a cycle no one holds is collected, not frozen for good
        assert gc.get_freeze_count() > 0
        frozen = gc.get_freeze_count()
        heap.settle()  # settling again unfreezes first: the count does not grow
        assert gc.get_freeze_count() <= frozen + 10
        assert kept.me is kept
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual


class _Servable:
    closed = False

    def close(self):
        self.closed = True


def _version(base, number):
    (Path(base) / str(number)).mkdir(parents=True)
    (Path(base) / str(number) / "saved_model.pb").write_bytes(b"")


def test_the_manager_reports_each_change_of_the_loaded_versions_once(tmp_path):
    base = tmp_path / "model"
    _version(base, 1)
    config = text_format.Parse(
        f'model_config_list {{ config {{ name: "m" base_path: "{base}" '
        'model_platform: "tensorflow" } }', model_server_config_pb2.ModelServerConfig())
    loaded, changes = [], []

    def load(name, version, path):
        loaded.append(_Servable())
        return loaded[-1]

    manager = ModelManager(config, file_system_poll_wait_seconds=0, servable_factory=load,
                           on_versions_changed=lambda: changes.append(len(loaded)))
    manager.start()
    assert changes == [1]
    manager._poll_once()  # nothing changed: no settling
    assert changes == [1]
    _version(base, 2)
    manager._poll_once()  # version 2 loaded, version 1 unloaded: one settling after both
    assert changes == [1, 2] and loaded[0].closed and not loaded[1].closed
    empty = model_server_config_pb2.ModelServerConfig()
    empty.model_config_list.SetInParent()
    manager.reload_config(empty)  # the model retired
    assert changes == [1, 2, 2] and loaded[1].closed
