"""A Pusher executor whose push a model server polling the directory can live with.

TFX's Pusher copies the SavedModel file by file into <base>/<version>/; a model
server that lists versions mid-copy can try to load half a model. On a local
file system this one copies into a hidden staging folder and renames it into
place (same file system, so the rename is atomic); TF Serving ignores
non-integer folder names. Object stores (gs://, s3://) have no atomic rename:
there the files go straight into <base>/<version>/ through tf.io.gfile,
saved_model.pb last, because a server can load a version only once that file
exists (docs/remote-push.md says what a polling server sees meanwhile).
When the InfraValidator wrote a warmed copy of the model (its blessing's
`has_model`), that copy is pushed, warmup requests included.
"""
import os
import shutil
import time

import tenacity
import tensorflow as tf
from absl import logging
from tfx.components.pusher import executor as pusher_executor
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import path_utils, proto_utils

from pipeline.components.infra_validator import HAS_MODEL

# A SavedModel folder is a loadable version once one of these exists in it.
MODEL_PROTO_FILES = ("saved_model.pb", "saved_model.pbtxt")

# tf.io.gfile's errors worth another try: the object store's client retries
# these itself, and gives up after its own time limit; one more round per file
# outlasts a longer outage without restarting the whole push.
TRANSIENT_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                    tf.errors.AbortedError, tf.errors.ResourceExhaustedError)
COPY_ATTEMPTS = 5


def is_local(uri: str) -> bool:
    """A plain path: the atomic rename works there. Anything with a scheme
    (gs://, s3://, hdfs://) goes through tf.io.gfile."""
    return "://" not in uri


def require_file_system(uri: str) -> None:
    """Fails early, with what to install, when tf.io.gfile cannot reach `uri`.
    TensorFlow has gs:// itself; tensorflow-io adds s3://, hdfs://, az:// when
    it is imported, so it is imported here if it is installed."""
    scheme = uri.split("://", 1)[0]
    if is_local(uri) or scheme in tf.io.gfile.get_registered_schemes():
        return
    try:
        import tensorflow_io  # noqa: F401  (registers its file systems)
    except ImportError:
        pass
    if scheme not in tf.io.gfile.get_registered_schemes():
        raise ValueError(
            f"TensorFlow has no file system for {scheme}:// (push destination {uri}): "
            f"it knows {', '.join(s for s in tf.io.gfile.get_registered_schemes() if s)}. "
            f"For s3://, install tensorflow-io matching TensorFlow "
            f"{tf.__version__} (docs/remote-push.md).")


def warmed_model_path(input_dict) -> str | None:
    """The InfraValidator's copy of the model with warmup requests, if it made one.
    TFX's Pusher reads it only when given no `model` input; this one keeps
    `model` (lineage and the served-model resolver follow it) and still pushes
    the warmed copy."""
    blessings = input_dict.get(standard_component_specs.INFRA_BLESSING_KEY)
    if not blessings:
        return None
    blessing = artifact_utils.get_single_instance(blessings)
    if not blessing.has_custom_property(HAS_MODEL) or \
            not blessing.get_int_custom_property(HAS_MODEL):
        return None
    return path_utils.stamped_model_path(blessing.uri)


def version_folders(base_directory: str) -> list[int]:
    """The integer folder names under the base directory, complete or not.
    (gs:// lists folders with a trailing slash.)"""
    if not tf.io.gfile.isdir(base_directory):
        return []
    names = (name.rstrip("/") for name in tf.io.gfile.listdir(base_directory))
    return sorted(int(name) for name in names if name.isdigit())


def is_complete(version_directory: str) -> bool:
    return any(tf.io.gfile.exists(f"{version_directory.rstrip('/')}/{name}")
               for name in MODEL_PROTO_FILES)


def next_version(existing: list[int]) -> int:
    """Seconds since the epoch, as TFX's Pusher does, but never reusing a version:
    not even one an interrupted push left incomplete, which a server may have
    listed already, and whose files would mix with the new model's."""
    return max([int(time.time())] + [version + 1 for version in existing])


def publish_atomically(model_path: str, base_directory: str) -> str:
    """Copy `model_path` to <base>/<version>/ so it appears all at once."""
    os.makedirs(base_directory, exist_ok=True)
    version = str(next_version(version_folders(base_directory)))
    staging = os.path.join(base_directory, f".staging-{version}")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(model_path, staging)
    os.rename(staging, os.path.join(base_directory, version))
    return version


def files_in_push_order(model_path: str) -> list[str]:
    """The SavedModel's files relative to it: variables/, assets/, assets.extra/,
    fingerprint.pb first, saved_model.pb (or .pbtxt) last."""
    root = model_path.rstrip("/")
    files = []
    for directory, _, names in tf.io.gfile.walk(root):
        relative = directory.rstrip("/")[len(root):].strip("/")
        files += [f"{relative}/{name}" if relative else name for name in names]
    return sorted(files, key=lambda name: (name in MODEL_PROTO_FILES, name))


@tenacity.retry(retry=tenacity.retry_if_exception_type(TRANSIENT_ERRORS),
                stop=tenacity.stop_after_attempt(COPY_ATTEMPTS),
                wait=tenacity.wait_exponential(multiplier=1, max=30),
                before_sleep=tenacity.before_sleep_log(logging, logging.WARNING),
                reraise=True)
def copy_file(source: str, destination: str) -> None:
    tf.io.gfile.copy(source, destination, overwrite=True)


def copy_in_order(model_path: str, destination: str) -> None:
    """Copy the SavedModel's files one by one, in files_in_push_order."""
    for name in files_in_push_order(model_path):
        target = f"{destination.rstrip('/')}/{name}"
        tf.io.gfile.makedirs(target.rsplit("/", 1)[0])
        copy_file(f"{model_path.rstrip('/')}/{name}", target)


def publish_in_order(model_path: str, base_directory: str) -> str:
    """Copy `model_path` to <base>/<version>/ on an object store, saved_model.pb
    last: the version becomes loadable only when all its other files are there."""
    existing = version_folders(base_directory)
    base = base_directory.rstrip("/")
    incomplete = [v for v in existing if not is_complete(f"{base}/{v}")]
    if incomplete:
        # Left by a push that was killed before its saved_model.pb: no server
        # loads them, and they are never reused; deleting them here could take
        # a version another pusher is still writing.
        logging.warning("Version folders without saved_model.pb under %s (interrupted "
                        "pushes; safe to delete): %s", base, incomplete)
    version = str(next_version(existing))
    copy_in_order(model_path, f"{base}/{version}")
    return version


def publish(model_path: str, base_directory: str) -> str:
    """Push to <base>/<version>/ as the destination allows; returns the version."""
    if is_local(base_directory):
        return publish_atomically(model_path, base_directory)
    require_file_system(base_directory)
    return publish_in_order(model_path, base_directory)


class AtomicPusherExecutor(pusher_executor.Executor):

    def Do(self, input_dict, output_dict, exec_properties):
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        model_path = warmed_model_path(input_dict) or self.GetModelPath(input_dict)
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        if destination.WhichOneof("destination") != "filesystem":
            raise ValueError("AtomicPusherExecutor pushes to a file system only "
                             "(push_destination.filesystem.base_directory).")
        base_directory = destination.filesystem.base_directory
        version = publish(model_path, base_directory)
        # Keep TFX's archive copy in the artifact, so lineage can point at it.
        if is_local(model_push.uri) and is_local(model_path):
            shutil.copytree(model_path, model_push.uri, dirs_exist_ok=True)
        else:
            copy_in_order(model_path, model_push.uri)
        self._MarkPushed(model_push,
                         pushed_destination=f"{base_directory.rstrip('/')}/{version}",
                         pushed_version=version)
        logging.info("Pushed model version %s to %s", version, base_directory)
