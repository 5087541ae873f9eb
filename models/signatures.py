"""The exported SavedModel's signatures, all applying the same Transform graph.

TF Serving's classify wants one or two outputs named `classes`/`scores`, and
its regress exactly one named `outputs`, so the tf.Example signatures are split:
- serving_default: serialized tf.Examples in, `classes` and `scores` out
  (TF Serving's predict and classify).
- big_tip_probability: serialized tf.Examples in, `outputs` (the probability of
  a big tip) out (TF Serving's regress, and what the Evaluator scores).
- serving_raw: one tensor per raw feature, so a REST user can post plain JSON;
  `outputs`, `scores` and `classes` out.
- transform_features: the transformed features, label included, for the Evaluator.
"""
import tensorflow as tf

from models import features

CLASS_NAMES = [b"0", b"1"]  # not a big tip, big tip
EVALUATION_SIGNATURE = "big_tip_probability"  # scored by the Evaluator
# What clients call (transform_features is the Evaluator's alone).
CLIENT_SIGNATURES = ("serving_default", EVALUATION_SIGNATURE, "serving_raw")


def _prediction_outputs(model, transformed):
    probability = model(transformed)  # [batch, 1]
    scores = tf.concat([1.0 - probability, probability], axis=1)
    classes = tf.tile(tf.constant([CLASS_NAMES]), [tf.shape(scores)[0], 1])
    return {"outputs": probability, "scores": scores, "classes": classes}


def _serving_feature_spec(tf_transform_output):
    spec = tf_transform_output.raw_feature_spec()
    spec.pop(features.TIPS_KEY, None)  # the label's source is unknown at serving time
    for name, feature_spec in spec.items():
        # A column the model does not read (e.g. the timestamp) is optional.
        if name not in features.RAW_FEATURES and isinstance(
                feature_spec, tf.io.FixedLenFeature):
            spec[name] = tf.io.FixedLenFeature(
                feature_spec.shape, feature_spec.dtype,
                default_value=tf.zeros(feature_spec.shape, feature_spec.dtype).numpy())
    return spec


def _examples_signature(model, tf_transform_output, output_names):
    """Serialized tf.Examples in; the named prediction outputs out."""
    layer = tf_transform_output.transform_features_layer()
    # Keras tracks the layer (and so saves its assets) once it is an attribute.
    setattr(model, "tft_layer_" + "_".join(output_names), layer)
    spec = _serving_feature_spec(tf_transform_output)

    # TF Serving's classify and regress look for an input named exactly "inputs".
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def serve_examples(serialized):
        outputs = _prediction_outputs(model, layer(tf.io.parse_example(serialized, spec)))
        return {name: outputs[name] for name in output_names}
    return serve_examples


def _raw_input(value, spec):
    """A [batch] tensor as the parser would have produced it for `spec`."""
    if isinstance(spec, tf.io.VarLenFeature):
        batch = tf.shape(value, out_type=tf.int64)[0]
        rows = tf.range(batch, dtype=tf.int64)
        indices = tf.stack([rows, tf.zeros_like(rows)], axis=1)
        return tf.SparseTensor(indices, value, tf.stack([batch, 1]))
    return tf.expand_dims(value, 1)


def _empty_input(spec, batch):
    """A stand-in for a raw column the model does not read (e.g. census tracts)."""
    if isinstance(spec, tf.io.VarLenFeature):
        return tf.SparseTensor(tf.zeros([0, 2], tf.int64), tf.zeros([0], spec.dtype),
                               tf.stack([tf.cast(batch, tf.int64), 1]))
    return tf.zeros(tf.concat([[batch], spec.shape], axis=0), spec.dtype)


def _raw_features_signature(model, tf_transform_output):
    model.tft_layer_raw = tf_transform_output.transform_features_layer()
    spec = _serving_feature_spec(tf_transform_output)
    input_signature = {name: tf.TensorSpec([None], spec[name].dtype, name=name)
                       for name in features.RAW_FEATURES}

    @tf.function(input_signature=[input_signature])
    def serve_raw(raw_values):
        batch = tf.shape(next(iter(raw_values.values())))[0]
        raw = {name: (_raw_input(raw_values[name], feature_spec) if name in raw_values
                      else _empty_input(feature_spec, batch))
               for name, feature_spec in spec.items()}
        return _prediction_outputs(model, model.tft_layer_raw(raw))
    return serve_raw


def _transform_features_signature(model, tf_transform_output):
    model.tft_layer_eval = tf_transform_output.transform_features_layer()
    spec = tf_transform_output.raw_feature_spec()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(serialized):
        return model.tft_layer_eval(tf.io.parse_example(serialized, spec))
    return transform_features


def export_signatures(model, tf_transform_output):
    return {
        "serving_default": _examples_signature(model, tf_transform_output,
                                               ["classes", "scores"]),
        EVALUATION_SIGNATURE: _examples_signature(model, tf_transform_output,
                                                   ["outputs"]),
        "serving_raw": _raw_features_signature(model, tf_transform_output),
        "transform_features": _transform_features_signature(model, tf_transform_output),
    }
