"""The Trainer's entry point: read transformed examples, fit, export a SavedModel.

Hyperparameters arrive in `fn_args.custom_config` from the pipeline's
configuration, so this module holds no knobs of its own.
"""
import tensorflow as tf
import tensorflow_transform as tft
from tfx_bsl.public import tfxio

from models import autograph_rules, features, model, signatures

autograph_rules.skip_keras_2()

DEFAULT_HYPERPARAMETERS = {"hidden_units": [32, 16], "learning_rate": 0.005,
                           "batch_size": 64}


def hyperparameters(custom_config) -> dict:
    return {**DEFAULT_HYPERPARAMETERS, **(custom_config or {}).get("hyperparameters", {})}


def make_dataset(file_pattern, data_accessor, tf_transform_output, batch_size):
    """Batches of (transformed features, label), repeated for step-based training:
    raw examples through the Transform graph, as the serving signatures apply it."""
    raw = data_accessor.tf_dataset_factory(
        file_pattern, tfxio.TensorFlowDatasetOptions(batch_size=batch_size),
        tf_transform_output.raw_metadata.schema)
    transform_layer = tf_transform_output.transform_features_layer()

    def transformed_with_label(raw_features):
        transformed = transform_layer(raw_features)
        return transformed, transformed.pop(features.TRANSFORMED_LABEL_KEY)

    return raw.map(transformed_with_label, num_parallel_calls=tf.data.AUTOTUNE).repeat()


def run_fn(fn_args):
    params = hyperparameters(fn_args.custom_config)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    train = make_dataset(fn_args.train_files, fn_args.data_accessor,
                         tf_transform_output, params["batch_size"])
    evaluation = make_dataset(fn_args.eval_files, fn_args.data_accessor,
                              tf_transform_output, params["batch_size"])

    keras_model = model.build_keras_model(params["hidden_units"], params["learning_rate"])
    keras_model.fit(
        train, steps_per_epoch=fn_args.train_steps,
        validation_data=evaluation, validation_steps=fn_args.eval_steps,
        callbacks=[tf.keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir)])
    tf.saved_model.save(keras_model, fn_args.serving_model_dir,
                        signatures=signatures.export_signatures(keras_model,
                                                                tf_transform_output))
