# The image every task of the Kubeflow Pipelines v2 / Vertex AI pipeline runs in
# (python pipeline/run_kubeflow.py --image IMAGE). TFX's own 1.16 image already has
# TFX, TensorFlow 2.16, tf-keras, Beam 2.59, protobuf 3.20.3 and kfp-pipeline-spec
# at this project's pins; this adds the project and the few packages it lacks,
# without upgrading any it has. Build and push: docs/kubeflow.md.
FROM gcr.io/tfx-oss-public/tfx:1.16.0

# Keras 2 through tf-keras: TensorFlow reads this when it loads.
ENV TF_USE_LEGACY_KERAS=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The compiled pipeline names files under this folder (the curated schema, Beam's
# --setup_file): it is IMAGE_PROJECT_ROOT in pipeline/config.py.
WORKDIR /taxi_tips

# The model server the InfraValidator starts needs uvicorn, httptools and uvloop,
# which TFX's image lacks: installed at requirements.lock's pins, without
# dependencies (the image has theirs), so nothing the image has changes.
COPY requirements.lock ./
RUN grep -E '^(uvicorn|httptools|uvloop)==' requirements.lock > image-extras.txt \
    && python -m pip install --no-deps --requirement image-extras.txt

COPY setup.py ./
COPY metadata/ metadata/
COPY models/ models/
COPY pipeline/ pipeline/
COPY serving/ serving/
# Editable, as make setup installs it: imports and the pipeline's paths agree.
# The build fails if anything moved TFX or TensorFlow off the image's versions.
RUN python -m pip install --no-deps --editable . \
    && python -c "import tfx.version, tensorflow as tf; \
assert tfx.version.__version__ == '1.16.0', tfx.version.__version__; \
assert tf.__version__.startswith('2.16.'), tf.__version__"
