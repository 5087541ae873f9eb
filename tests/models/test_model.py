"""The Keras model on transformed real trips: it learns, overfits a few records,
produces no NaN, and its exported signatures agree with each other."""
import numpy as np
import tensorflow as tf

from models import features, model, signatures


def batch_of(sample, rows):
    names = [n for n in sample.transformed[0] if n != features.TRANSFORMED_LABEL_KEY]
    x = {name: np.array([[sample.transformed[i][name]] for i in rows]) for name in names}
    y = np.array([[sample.transformed[i][features.TRANSFORMED_LABEL_KEY]] for i in rows],
                 dtype=np.float32)
    return x, y


def test_model_outputs_one_probability_per_trip(transformed_sample):
    x, _ = batch_of(transformed_sample, range(10))
    probabilities = model.build_keras_model()(x).numpy()
    assert probabilities.shape == (10, 1)
    assert np.all((probabilities >= 0) & (probabilities <= 1))


def test_training_lowers_the_loss(transformed_sample):
    tf.keras.utils.set_random_seed(1)
    x, y = batch_of(transformed_sample, range(len(transformed_sample.transformed)))
    history = model.build_keras_model().fit(x, y, epochs=15, batch_size=32, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.7 * losses[0], losses


def test_overfits_a_few_records(transformed_sample):
    tf.keras.utils.set_random_seed(2)
    labels = [row[features.TRANSFORMED_LABEL_KEY] for row in transformed_sample.transformed]
    positives = [i for i, label in enumerate(labels) if label == 1][:4]
    negatives = [i for i, label in enumerate(labels) if label == 0][:4]
    x, y = batch_of(transformed_sample, positives + negatives)
    keras_model = model.build_keras_model(learning_rate=0.02)
    history = keras_model.fit(x, y, epochs=200, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < 0.05
    assert history.history["accuracy"][-1] == 1.0


def test_training_produces_no_nan(transformed_sample):
    tf.keras.utils.set_random_seed(3)
    x, y = batch_of(transformed_sample, range(len(transformed_sample.transformed)))
    keras_model = model.build_keras_model(learning_rate=0.05)  # a high rate, on purpose
    history = keras_model.fit(x, y, epochs=10, batch_size=16, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert all(np.all(np.isfinite(w)) for w in keras_model.get_weights())
    assert np.all(np.isfinite(keras_model(x).numpy()))


def serialized_example(raw_row, feature_spec):
    """A CSV row as the tf.Example ExampleGen would have made of it (no label)."""
    feature = {}
    for name, spec in feature_spec.items():
        value = raw_row[name]
        if value == "" or name == features.TIPS_KEY:
            continue
        if spec.dtype == tf.string:
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        elif spec.dtype == tf.int64:
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(float(value))]))
        else:
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_exported_signatures_apply_the_same_transform(transformed_sample, tmp_path):
    tf.keras.utils.set_random_seed(4)
    keras_model = model.build_keras_model()
    x, y = batch_of(transformed_sample, range(64))
    keras_model.fit(x, y, epochs=1, verbose=0)
    tf.saved_model.save(keras_model, str(tmp_path),
                        signatures=signatures.export_signatures(
                            keras_model, transformed_sample.tf_transform_output))
    loaded = tf.saved_model.load(str(tmp_path))
    assert set(loaded.signatures) == {"serving_default", "serving_raw",
                                      signatures.EVALUATION_SIGNATURE, "transform_features"}

    row = next(r for r in transformed_sample.raw_rows
               if all(r[name] != "" for name in features.RAW_FEATURES))
    examples = tf.constant([serialized_example(row, transformed_sample.feature_spec)])
    by_example = loaded.signatures["serving_default"](inputs=examples)
    probability = loaded.signatures[signatures.EVALUATION_SIGNATURE](inputs=examples)["outputs"]

    raw_spec = transformed_sample.feature_spec
    def raw_value(name):
        dtype = raw_spec[name].dtype
        if dtype == tf.string:
            return tf.constant([row[name]])
        cast = int if dtype == tf.int64 else float
        return tf.constant([cast(float(row[name]))], dtype=dtype)
    raw_inputs = {name: raw_value(name) for name in features.RAW_FEATURES}
    by_raw = loaded.signatures["serving_raw"](**raw_inputs)

    np.testing.assert_allclose(by_raw["outputs"].numpy(), probability.numpy(), rtol=1e-5)
    np.testing.assert_allclose(by_raw["scores"].numpy(), by_example["scores"].numpy(), rtol=1e-5)
    assert by_example["classes"].numpy().tolist() == [[b"0", b"1"]]
    np.testing.assert_allclose(by_example["scores"].numpy().sum(axis=1), [1.0], rtol=1e-6)
