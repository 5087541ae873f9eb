"""The one piece of model code both peer servers share: a SavedModel signature called
on named columns, as a user would write it for a server without a TensorFlow runtime.

Imported by kserve_server.py and mlserver_runtime.py inside their own venvs.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


class SignatureRunner:
    def __init__(self, version_dir: str, signature: str):
        self.function = tf.saved_model.load(version_dir).signatures[signature]
        self.input_specs = self.function.structured_input_signature[1]

    def run(self, columns: dict) -> dict:
        """{input name: list or array of values} -> {output name: ndarray}."""
        feeds = {name: tf.constant(columns[name], dtype=spec.dtype)
                 for name, spec in self.input_specs.items()}
        return {name: tensor.numpy() for name, tensor in self.function(**feeds).items()}


def as_json_value(array: np.ndarray):
    """ndarray -> JSON-ready nested lists (bytes as text)."""
    if array.dtype == object:
        return np.vectorize(lambda v: v.decode("utf-8"), otypes=[object])(array).tolist()
    return array.tolist()
