"""A Python model server that answers like TensorFlow Serving's tensorflow_model_server.

Layers, each knowing only the one below: flags/model_config -> manager (versions)
-> servable (one SavedModel version, batching underneath) -> rest_api / grpc_api.
"""
import os

# TFX 1.16 models are Keras-2 SavedModels; TF must see this before it is imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
