"""A Pusher executor whose push is atomic for a server polling the directory.

TFX's Pusher copies the SavedModel file by file into <base>/<version>/; a model
server that lists versions mid-copy can try to load half a model. This one
copies into a hidden staging folder and renames it into place (same file
system, so the rename is atomic); TF Serving ignores non-integer folder names.
When the InfraValidator wrote a warmed copy of the model (its blessing's
`has_model`), that copy is pushed, warmup requests included.
"""
import os
import shutil
import time

from absl import logging
from tfx.components.pusher import executor as pusher_executor
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import path_utils, proto_utils

from pipeline.components.infra_validator import HAS_MODEL


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


def next_version(base_directory: str) -> int:
    """Seconds since the epoch, as TFX's Pusher does, but never reusing a version."""
    existing = [int(name) for name in os.listdir(base_directory) if name.isdigit()]
    return max([int(time.time())] + [version + 1 for version in existing])


def publish_atomically(model_path: str, base_directory: str) -> str:
    """Copy `model_path` to <base>/<version>/ so it appears all at once."""
    os.makedirs(base_directory, exist_ok=True)
    version = str(next_version(base_directory))
    staging = os.path.join(base_directory, f".staging-{version}")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(model_path, staging)
    os.rename(staging, os.path.join(base_directory, version))
    return version


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
            raise ValueError("AtomicPusherExecutor pushes to a local file system only.")
        base_directory = destination.filesystem.base_directory
        version = publish_atomically(model_path, base_directory)
        # Keep TFX's archive copy in the artifact, so lineage can point at it.
        shutil.copytree(model_path, model_push.uri, dirs_exist_ok=True)
        self._MarkPushed(model_push,
                         pushed_destination=os.path.join(base_directory, version),
                         pushed_version=version)
        logging.info("Pushed model version %s to %s", version, base_directory)
