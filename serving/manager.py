"""Which model versions are loaded: polls each base path, loads and unloads by version policy.

Mirrors TF Serving's file-system source + AspiredVersionsManager with the
AvailabilityPreservingPolicy: a new version is loaded before an old one is unloaded, so a
swap never leaves a model without a servable. Also resolves version labels.
"""
import dataclasses
import logging
import os
import threading
import time

import grpc

from serving import errors

log = logging.getLogger("serving.manager")

START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"
MAX_LOAD_ATTEMPTS = 5  # TF Serving's --max_num_load_retries default, plus the first try


@dataclasses.dataclass
class VersionState:
    version: int
    state: str
    error_code: int = 0  # a grpc.StatusCode number; 0 is OK
    error_message: str = ""


class _Model:
    """Book-keeping for one configured model; guarded by ModelManager._lock."""

    def __init__(self, config):
        self.config = config
        self.servables = {}  # version -> Servable, only AVAILABLE ones
        self.states = {}  # version -> VersionState, kept after unload as TF Serving does
        self.failed_attempts = {}  # version -> number of failed loads
        self.labels = {}  # label -> version, applied once validated
        self.warned_empty = False  # log a missing/empty base path once, not every poll


def list_versions(base_path: str) -> list:
    """Integer-named children of base_path; anything else (staging dirs, files) is ignored."""
    try:
        names = os.listdir(base_path)
    except OSError:
        return []
    versions = []
    for name in names:
        if not name.isdigit():
            continue
        path = os.path.join(base_path, name)
        # A version still being copied has no saved_model.pb yet: wait for it.
        if os.path.isdir(path) and (os.path.exists(os.path.join(path, "saved_model.pb"))
                                    or os.path.exists(os.path.join(path, "saved_model.pbtxt"))):
            versions.append(int(name))
    return sorted(versions)


def aspired_versions(model_config, available_on_disk: list) -> list:
    """The versions the config's model_version_policy wants, from those on disk."""
    policy = model_config.model_version_policy
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        return list(available_on_disk)
    if which == "specific":
        wanted = set(policy.specific.versions)
        return [v for v in available_on_disk if v in wanted]
    num_versions = policy.latest.num_versions if which == "latest" else 1
    num_versions = num_versions or 1
    return sorted(available_on_disk)[-num_versions:]


class ModelManager:
    """Serves `Servable`s by (name, version | label); keeps them in step with the disk."""

    def __init__(self, config, file_system_poll_wait_seconds: float = 1,
                 servable_factory=None, allow_version_labels_for_unavailable_models=False,
                 max_load_attempts: int = MAX_LOAD_ATTEMPTS):
        self._lock = threading.RLock()
        self._poll_lock = threading.Lock()  # one poll (load/unload pass) at a time
        self._models = {}
        self._poll_seconds = file_system_poll_wait_seconds
        self._servable_factory = servable_factory or _default_servable_factory
        self._allow_unavailable_labels = allow_version_labels_for_unavailable_models
        self._max_load_attempts = max(1, max_load_attempts)
        self._stop = threading.Event()
        self._thread = None
        self._retired_states = {}  # model name -> states of a model dropped by a reload
        self._apply_config(config)
        self._config = config  # start() fails the server if its labels cannot apply

    # --- lifecycle ----------------------------------------------------------------------
    def start(self):
        """Loads the first versions (blocking, as TF Serving does before it opens ports)."""
        with self._poll_lock:
            self._poll_once()
            self._apply_labels()
        if self._poll_seconds and self._poll_seconds > 0:
            self._thread = threading.Thread(target=self._poll_forever, name="version-poller",
                                            daemon=True)
            self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _poll_forever(self):
        while not self._stop.wait(self._poll_seconds):
            try:
                with self._poll_lock:
                    self._poll_once()
            except Exception:  # a poll must never kill the poller
                log.exception("File system poll failed")

    # --- lookups (the contract other layers use) -----------------------------------------
    def model_names(self) -> list:
        with self._lock:
            return sorted(self._models)

    def servable(self, model_name: str, version=None, label=None):
        with self._lock:
            model = self._models.get(model_name)
            if label is not None:
                version = self._resolve_label(model, model_name, label)
            if model is not None:
                if version is None:
                    if model.servables:
                        return model.servables[max(model.servables)]
                elif int(version) in model.servables:
                    return model.servables[int(version)]
        request = f"Latest({model_name})" if version is None \
            else f"Specific({model_name}, {int(version)})"
        raise errors.not_found(f"Servable not found for request: {request}")

    def _resolve_label(self, model, model_name, label):
        if model is not None and label in model.labels:
            return model.labels[label]
        raise errors.invalid_argument(f"Unrecognized servable version label: {label}")

    def version_states(self, model_name: str, version=None, label=None) -> list:
        """Newest first. Like TF Serving's GetModelStatus, a label is ignored here."""
        with self._lock:
            model = self._models.get(model_name)
            # A model dropped by a reload keeps its history until the server stops.
            states = dict(model.states if model is not None
                          else self._retired_states.get(model_name, {}))
        if version is not None:
            state = states.get(int(version))
            if state is None:
                raise errors.not_found(
                    f"Could not find version {int(version)} of model {model_name}")
            return [dataclasses.replace(state)]
        if not states:
            raise errors.not_found(f"Could not find any versions of model {model_name}")
        return [dataclasses.replace(states[v]) for v in sorted(states, reverse=True)]

    def labels(self, model_name: str) -> dict:
        with self._lock:
            model = self._models.get(model_name)
            return dict(model.labels) if model is not None else {}

    # --- configuration --------------------------------------------------------------------
    @property
    def config(self):
        return self._config

    def reload_config(self, config) -> None:
        """Serves exactly the models in `config`; returns once their versions are loaded."""
        with self._poll_lock:
            self._apply_config(config)
            self._poll_once()
            self._apply_labels()
            # Recorded only once labels applied too, so that the config-file poller
            # retries a config whose labels named a version that was not loaded yet.
            self._config = config

    def _apply_config(self, config):
        which = config.WhichOneof("config")
        if which == "custom_model_config":
            raise errors.invalid_argument("ModelServer does not yet support custom model config.")
        model_configs = list(config.model_config_list.config) if which else []
        seen = set()
        for model_config in model_configs:
            if model_config.name in seen:
                raise errors.invalid_argument(
                    f"Illegal to list model {model_config.name} multiple times in config list")
            seen.add(model_config.name)
            platform = model_config.model_platform or "tensorflow"
            if platform != "tensorflow":
                raise errors.invalid_argument(
                    f"Model {model_config.name} requested unsupported platform {platform}")
        with self._lock:
            for name in list(self._models):
                if name not in seen:
                    self._retire(name)
            for model_config in model_configs:
                model = self._models.get(model_config.name)
                if model is None:
                    self._models[model_config.name] = _Model(model_config)
                    self._retired_states.pop(model_config.name, None)
                else:
                    model.config = model_config

    def _retire(self, name):
        model = self._models.pop(name)
        for version, servable in list(model.servables.items()):
            servable.close()
            model.states[version] = VersionState(version, END)
        model.servables.clear()
        self._retired_states[name] = model.states
        log.info("Unloaded all versions of model %s (removed from config)", name)

    def _apply_labels(self):
        """Validates every label of the current config, then installs them all at once."""
        with self._lock:
            models = list(self._models.items())
        new_labels = {}
        for name, model in models:
            labels = dict(model.config.version_labels)
            for label, version in labels.items():
                if not self._allow_unavailable_labels and version not in model.servables:
                    raise errors.failed_precondition(
                        f"Request to assign label to version {version} of model {name}, "
                        "which is not currently available for inference")
            new_labels[name] = labels
        with self._lock:
            for name, labels in new_labels.items():
                if name in self._models:
                    self._models[name].labels = labels

    # --- the load/unload pass ------------------------------------------------------------
    def _poll_once(self):
        with self._lock:
            models = list(self._models.items())
        for name, model in models:
            self._reconcile(name, model)

    def _reconcile(self, name, model):
        on_disk = list_versions(model.config.base_path)
        if not on_disk and not model.warned_empty:
            log.warning("No versions of servable %s found under base path %s. Did you forget "
                        "to name your leaf directory as a number (eg. '/1/')?", name,
                        model.config.base_path)
        model.warned_empty = not on_disk
        wanted = aspired_versions(model.config, on_disk)
        for version in sorted(wanted):
            if version in model.servables:
                continue
            if model.failed_attempts.get(version, 0) >= self._max_load_attempts:
                continue
            self._load(name, model, version)
        with self._lock:
            aspired_available = any(v in model.servables for v in wanted)
            to_unload = [v for v in model.servables if v not in wanted]
            # Availability preserving: drop old versions only once a wanted one serves.
            if to_unload and (aspired_available or not wanted):
                for version in to_unload:
                    model.states[version] = VersionState(version, UNLOADING)
                    model.servables.pop(version).close()
                    model.states[version] = VersionState(version, END)
                    log.info("Unloaded servable version {name: %s version: %d}", name, version)

    def _load(self, name, model, version):
        path = os.path.join(model.config.base_path, str(version))
        with self._lock:
            model.states[version] = VersionState(version, LOADING)
        log.info("Loading servable version {name: %s version: %d}", name, version)
        started = time.monotonic()
        try:
            servable = self._servable_factory(name, version, path)
        except Exception as e:  # any load failure is reported in the version status
            code, message = _error_code_and_message(e)
            attempts = model.failed_attempts.get(version, 0) + 1
            model.failed_attempts[version] = attempts
            log.error("Loading servable: {name: %s version: %d} failed: %s", name, version,
                      message)
            with self._lock:
                model.states[version] = VersionState(version, END, code, message)
            return
        with self._lock:
            model.servables[version] = servable
            model.states[version] = VersionState(version, AVAILABLE)
            model.failed_attempts.pop(version, None)
        log.info("Successfully loaded servable version {name: %s version: %d} in %.1fs",
                 name, version, time.monotonic() - started)


def _error_code_and_message(error):
    if isinstance(error, errors.ServingError):
        return error.code.value[0], error.message
    op_code = getattr(error, "error_code", None)
    if isinstance(op_code, int):
        return op_code, getattr(error, "message", str(error))
    return grpc.StatusCode.UNKNOWN.value[0], f"{type(error).__name__}: {error}"


def _default_servable_factory(name, version, path):
    from serving.servable import Servable

    return Servable(name, version, path)
