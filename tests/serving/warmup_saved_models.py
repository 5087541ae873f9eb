"""A test SavedModel that counts its calls, to see how often warmup replayed a request.

call_counter: every signature adds one to a variable before it answers, and predict returns
that count, so the first request after a warmup of N records x K iterations gets N*K + 1.
Tests build it with conftest.build_models("warmup_saved_models", root).
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402


class CallCounter(tf.Module):
    def __init__(self):
        super().__init__()
        self.calls = tf.Variable(0, dtype=tf.int64)

    def _parse_x(self, serialized):
        return tf.io.parse_example(
            serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def predict(self, x):
        calls = self.calls.assign_add(1)
        return {"y": x + 1.0, "calls": tf.fill(tf.shape(x), calls)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, serialized):
        self.calls.assign_add(1)
        return {"outputs": self._parse_x(serialized) + 1.0}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, serialized):
        self.calls.assign_add(1)
        return {"scores": self._parse_x(serialized)}


def build_call_counter(export_dir: str) -> str:
    module = CallCounter()
    tf.saved_model.save(module, export_dir, signatures={
        "serving_default": module.predict,
        "regress_x": module.regress,
        "classify_x": module.classify,
    })
    return export_dir


def build_all(root: str) -> dict:
    return {"call_counter": build_call_counter(os.path.join(root, "call_counter"))}
