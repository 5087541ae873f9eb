"""The taxi tips TFX pipeline: configuration, component wiring, runners, lineage."""
import os

# Keras 2 (tf-keras) must be chosen before TensorFlow is first imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
