"""The taxi tips MLOps project: a TFX pipeline, its model code, a model server.

Exact versions of every dependency are in requirements.lock; `make setup`
installs them, then this package in editable mode without re-resolving.
"""
from setuptools import find_packages, setup

setup(
    name="taxi-tips-mlops",
    version="0.1.0",
    description="Continuous delivery for ML with TFX: pipeline, lineage, TF Serving-compatible server",
    python_requires="==3.10.*",
    packages=find_packages(include=["metadata", "metadata.*", "models", "models.*",
                                    "pipeline", "pipeline.*", "serving", "serving.*"]),
    package_data={"pipeline": ["schema/*.pbtxt"]},
    install_requires=[
        "tfx==1.16.0",
        "tensorflow==2.16.2",
        "tf-keras==2.16.0",
        "apache-beam==2.59.0",  # the Beam TFX 1.16 was released with
        "dill==0.3.1.1",
        "ml-metadata==1.16.0",
        "tensorflow-transform==1.16.0",
        "tensorflow-data-validation==1.16.1",
        "tensorflow-model-analysis==0.47.1",
        "tensorflow-serving-api==2.16.1",
        "grpcio",
        "matplotlib",  # the monitor's HTML charts (SVG, Agg backend)
        "pytest",
    ],
)
