"""Small real SavedModels for the serving tests, built with TensorFlow in a few seconds.

half_plus_two mirrors TF Serving's own test model (y = a*x + b, plus classify/regress
signatures over serialized tf.Examples); multi_io exercises many named inputs/outputs,
strings, *_bytes outputs, NaN/Inf, rank-2 tensors and a deliberately slow signature.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402


class HalfPlusTwo(tf.Module):
    def __init__(self, intercept: float):
        super().__init__()
        self.slope = tf.Variable(0.5)
        self.intercept = tf.Variable(intercept)

    def _y(self, x):
        return self.slope * x + self.intercept

    def _parse_x(self, serialized):
        features = tf.io.parse_example(
            serialized, {"x": tf.io.FixedLenFeature([1], tf.float32, default_value=[0.0])})
        return features["x"]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def predict(self, x):
        return {"y": self._y(x)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress_x_to_y(self, serialized):
        return {"outputs": self._y(self._parse_x(serialized))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify_x_to_y(self, serialized):
        # As TF Serving's half_plus_two: scores only, so labels come back empty.
        return {"scores": self._y(self._parse_x(serialized))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify_with_classes(self, serialized):
        y = self._y(self._parse_x(serialized))
        batch = tf.shape(y)[0]
        classes = tf.tile(tf.constant([["low", "high"]]), [batch, 1])
        return {"classes": classes, "scores": tf.concat([1.0 - y, y], axis=1)}


def build_half_plus_two(export_dir: str, intercept: float = 2.0) -> str:
    module = HalfPlusTwo(intercept)
    signatures = {
        "serving_default": module.predict,
        "regress_x_to_y": module.regress_x_to_y,
        "classify_x_to_y": module.classify_x_to_y,
        "classify_with_classes": module.classify_with_classes,
    }
    tf.saved_model.save(module, export_dir, signatures=signatures)
    return export_dir


class MultiIO(tf.Module):
    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.float32, name="a"),
        tf.TensorSpec([None], tf.int64, name="b"),
        tf.TensorSpec([None], tf.string, name="text"),
        tf.TensorSpec([None], tf.string, name="image_bytes"),
    ])
    def predict(self, a, b, text, image_bytes):
        b_float = tf.cast(b, tf.float32)
        return {
            "sum": a + b_float,
            "ratio": a / b_float,  # b == 0 gives Inf or NaN, printed as TF Serving does
            "text_upper": tf.strings.upper(text),
            "length": tf.strings.length(text),
            "echo_bytes": image_bytes,
        }

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="m")])
    def matrix(self, m):
        return {"doubled": m * 2.0}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="n")])
    def slow(self, n):
        # A busy loop of max(n) steps, so tests can make a request outlast a timeout.
        steps = tf.reduce_max(n)

        def body(i, total):
            return i + 1, total + tf.math.floormod(i * 7, 3)

        _, total = tf.while_loop(lambda i, _: i < steps, body,
                                 (tf.constant(0, tf.int64), tf.constant(0, tf.int64)))
        return {"count": tf.fill(tf.shape(n), total)}


    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="tokens")])
    def batch_info(self, tokens):
        # Reports the batch the graph actually ran on, so tests can see server batching.
        shape = tf.shape(tokens)
        return {"batch_size": tf.fill(shape[:1], shape[0]),
                "width": tf.fill(shape[:1], shape[1]),
                "total": tf.reduce_sum(tokens, axis=1)}


def build_multi_io(export_dir: str) -> str:
    module = MultiIO()
    signatures = {
        "serving_default": module.predict,
        "matrix": module.matrix,
        "slow": module.slow,
        "batch_info": module.batch_info,
    }
    tf.saved_model.save(module, export_dir, signatures=signatures)
    return export_dir


def build_all(root: str) -> dict:
    """Builds every test model under root; returns {name: version directory}."""
    return {
        "half_plus_two": build_half_plus_two(os.path.join(root, "half_plus_two")),
        "half_plus_three": build_half_plus_two(os.path.join(root, "half_plus_three"), 3.0),
        "multi_io": build_multi_io(os.path.join(root, "multi_io")),
    }


if __name__ == "__main__":
    import sys

    print(build_all(sys.argv[1] if len(sys.argv) > 1 else "/tmp/serving_test_models"))
