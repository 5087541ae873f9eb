"""Pure ML code for the taxi tips model: features, preprocessing_fn, Keras model, run_fn.

No file paths and no TFX orchestration live here; the pipeline passes both in.
"""
