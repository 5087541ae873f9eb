"""TF Serving's model config file as the release step keeps it: which versions of
the model the server loads (`model_version_policy { specific }`) and which version
each label names (`version_labels`).

Written atomically (a temporary file renamed over it), so a server polling the
file never reads half of it; fields a user added (logging_config, other models)
are kept as they are.
"""
import dataclasses
import os
import pathlib
import tempfile

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

ModelServerConfig = model_server_config_pb2.ModelServerConfig
STABLE, CANARY = "stable", "canary"


class ServingConfigError(RuntimeError):
    """The config file cannot be read, or does not describe the model."""


@dataclasses.dataclass(frozen=True)
class ServedVersions:
    """What the config file asks of one model."""
    loaded: tuple[int, ...]  # the `specific` versions, ascending
    stable: int | None
    canary: int | None

    @property
    def labelled(self) -> set[int]:
        return {v for v in (self.stable, self.canary) if v is not None}


def read(path: os.PathLike | str) -> ModelServerConfig | None:
    """The config in the file; None if there is no file yet."""
    path = pathlib.Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ServingConfigError(f"cannot read the serving config {path}: {error}") from None
    try:
        return text_format.Parse(text, ModelServerConfig())
    except text_format.ParseError as error:
        raise ServingConfigError(
            f"{path} is not a ModelServerConfig text proto ({error}); fix or remove it "
            "(the release step then writes a new one)") from None


def _model_entry(config: ModelServerConfig, model_name: str):
    for entry in config.model_config_list.config:
        if entry.name == model_name:
            return entry
    return None


def served_versions(config: ModelServerConfig | None, model_name: str) -> ServedVersions:
    """The model's versions and labels; empty if the config lacks the model."""
    entry = _model_entry(config, model_name) if config is not None else None
    if entry is None:
        return ServedVersions((), None, None)
    labels = entry.version_labels
    return ServedVersions(tuple(sorted(entry.model_version_policy.specific.versions)),
                          labels.get(STABLE), labels.get(CANARY))


def with_served_versions(config: ModelServerConfig | None, model_name: str,
                         base_path: os.PathLike | str,
                         served: ServedVersions) -> ModelServerConfig:
    """A copy of `config` (or a new one) whose entry for the model loads exactly
    served.loaded and labels stable and canary; every other field is kept."""
    updated = ModelServerConfig()
    if config is not None:
        updated.CopyFrom(config)
    entry = _model_entry(updated, model_name)
    if entry is None:
        entry = updated.model_config_list.config.add(
            name=model_name, base_path=str(base_path), model_platform="tensorflow")
    entry.model_version_policy.specific.ClearField("versions")
    entry.model_version_policy.specific.versions.extend(sorted(set(served.loaded)))
    for label, version in ((STABLE, served.stable), (CANARY, served.canary)):
        if version is None:
            entry.version_labels.pop(label, None)
        else:
            entry.version_labels[label] = version
    return updated


def write(path: os.PathLike | str, config: ModelServerConfig) -> None:
    """Replaces the file in one rename: the server sees the old or the new config."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as f:
            f.write(text_format.MessageToString(config))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise
