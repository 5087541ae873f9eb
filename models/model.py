"""The Keras model: a small wide-and-deep classifier over the transformed features.

Numbers feed a deep tower; categorical ids are one-hot encoded into a wide
part; one sigmoid unit predicts the probability of a big tip.
"""
import tensorflow as tf

from models import features


def _categorical_sizes():
    """Number of ids each categorical input can take after Transform."""
    vocabulary_size = features.VOCABULARY_TOP_K + features.VOCABULARY_OOV_BUCKETS
    sizes = {key: vocabulary_size for key in features.VOCABULARY_FEATURES}
    sizes.update({key: features.BUCKET_COUNT for key in features.BUCKET_FEATURES})
    sizes.update(features.CATEGORICAL_FEATURES)
    return sizes


def build_keras_model(hidden_units=(32, 16), learning_rate=0.005) -> tf.keras.Model:
    numeric_inputs = {
        name: tf.keras.layers.Input(name=name, shape=(1,), dtype=tf.float32)
        for name in map(features.transformed_name, features.NUMERIC_FEATURES)}
    categorical_inputs = {
        features.transformed_name(key): (
            tf.keras.layers.Input(name=features.transformed_name(key), shape=(1,),
                                  dtype=tf.int64), size)
        for key, size in _categorical_sizes().items()}

    deep = tf.keras.layers.concatenate(list(numeric_inputs.values()))
    for units in hidden_units:
        deep = tf.keras.layers.Dense(units, activation="relu")(deep)
    wide = tf.keras.layers.concatenate([
        tf.keras.layers.CategoryEncoding(num_tokens=size, output_mode="one_hot")(layer)
        for layer, size in categorical_inputs.values()])
    probability = tf.keras.layers.Dense(1, activation="sigmoid", name="big_tip")(
        tf.keras.layers.concatenate([deep, wide]))

    inputs = {**numeric_inputs,
              **{name: layer for name, (layer, _) in categorical_inputs.items()}}
    model = tf.keras.Model(inputs, probability)
    model.compile(
        loss="binary_crossentropy",
        optimizer=tf.keras.optimizers.Adam(learning_rate=learning_rate),
        metrics=[tf.keras.metrics.BinaryAccuracy(name="accuracy"),
                 tf.keras.metrics.AUC(name="auc")])
    return model
