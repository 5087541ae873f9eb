"""The Transform step: raw taxi features in, model-ready tensors out.

Full-pass TFT analyzers (mean, z-score, vocabulary, quantiles) run over the
training window, and the same graph is applied at serving time. Every analyzer
is named, so that its key in Transform's analyzer cache is stable across runs.
"""
import tensorflow as tf
import tensorflow_transform as tft

from models import features


def _as_dense(value, default):
    """A rank-1 dense tensor from a raw feature; missing cells take `default`."""
    if not isinstance(value, tf.sparse.SparseTensor):
        return tf.reshape(value, [-1])
    rows = tf.SparseTensor(value.indices, value.values, [value.dense_shape[0], 1])
    return tf.squeeze(tf.sparse.to_dense(rows, default), axis=1)


def _as_float(value):
    if isinstance(value, tf.sparse.SparseTensor):
        return tf.SparseTensor(value.indices, tf.cast(value.values, tf.float32),
                               value.dense_shape)
    return tf.cast(value, tf.float32)


def _mean_imputed(value, key):
    """Missing numbers become the mean of the values present in the data."""
    value = _as_float(value)
    present = value.values if isinstance(value, tf.sparse.SparseTensor) else value
    return _as_dense(value, tft.mean(present, name=f"{key}_mean"))


def preprocessing_fn(inputs):
    outputs = {}
    for key in features.NUMERIC_FEATURES:
        outputs[features.transformed_name(key)] = tft.scale_to_z_score(
            _mean_imputed(inputs[key], key), name=f"{key}_z_score")

    for key in features.VOCABULARY_FEATURES:
        outputs[features.transformed_name(key)] = tft.compute_and_apply_vocabulary(
            _as_dense(inputs[key], ""),
            top_k=features.VOCABULARY_TOP_K,
            num_oov_buckets=features.VOCABULARY_OOV_BUCKETS,
            vocab_filename=key, name=f"{key}_vocabulary")

    for key in features.BUCKET_FEATURES:
        outputs[features.transformed_name(key)] = tft.bucketize(
            _mean_imputed(inputs[key], key), features.BUCKET_COUNT, name=f"{key}_buckets")

    for key, size in features.CATEGORICAL_FEATURES.items():
        # Clip, so an id the model was not built for cannot crash serving.
        ids = tf.cast(_as_dense(inputs[key], tf.cast(0, inputs[key].dtype)), tf.int64)
        outputs[features.transformed_name(key)] = tf.clip_by_value(ids, 0, size - 1)

    fare = _as_dense(_as_float(inputs[features.FARE_KEY]), 0.0)
    tips = _as_dense(_as_float(inputs[features.TIPS_KEY]), 0.0)
    big_tip = tf.greater(tips, fare * features.BIG_TIP_FRACTION)
    outputs[features.TRANSFORMED_LABEL_KEY] = tf.cast(big_tip, tf.int64)
    return outputs
