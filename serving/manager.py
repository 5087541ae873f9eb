"""Which model versions are loaded: polls each base path, loads and unloads by version policy.

Mirrors TF Serving's file-system source + AspiredVersionsManager with the
AvailabilityPreservingPolicy: a new version is loaded before an old one is unloaded, so a
swap never leaves a model without a servable. Like TF Serving's
servable_versions_always_present, a base path that holds no wanted version never takes a
model's last versions away; only a config that drops the model does. Also resolves labels.
"""
import dataclasses
import logging
import os
import re
import threading
import time

import grpc

from serving import errors, request_logging

log = logging.getLogger("serving.manager")

START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"
MAX_NUM_LOAD_RETRIES = 5  # TF Serving's --max_num_load_retries default
LOAD_RETRY_INTERVAL_MICROS = 60 * 1000 * 1000  # TF Serving's --load_retry_interval_micros
_VERSION_NAME = re.compile(r"[0-9]+")
_MAX_VERSION = 2 ** 63 - 1  # versions are int64, as TF Serving parses them


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
        self.failed_files = {}  # version -> files_fingerprint() of its last failed load
        self.labels = {}  # label -> version, applied once validated
        self.warned_empty = False  # log a missing/empty base path once, not every poll
        self.warned_duplicates = set()  # (version, folder names) already logged


def version_directories(base_path: str) -> dict:
    """{version: folder name} of the version folders under base_path.

    A folder's integer value is its version ("00000123" is 123), as TF Serving parses it.
    When several folders name one version ("123" and "0123"), the last in sorted order
    wins, as in TF Serving's file-system source.
    """
    return {version: names[-1] for version, names in _version_folders(base_path).items()}


def _version_folders(base_path: str) -> dict:
    """{version: [folder names, sorted]}; other names (staging dirs, files) and a folder
    still being copied (no saved_model.pb yet) are ignored."""
    try:
        names = sorted(os.listdir(base_path))
    except OSError:
        return {}
    folders = {}
    for name in names:
        if not _VERSION_NAME.fullmatch(name) or int(name) > _MAX_VERSION:
            continue
        path = os.path.join(base_path, name)
        if os.path.isdir(path) and (os.path.exists(os.path.join(path, "saved_model.pb"))
                                    or os.path.exists(os.path.join(path, "saved_model.pbtxt"))):
            folders.setdefault(int(name), []).append(name)
    return folders


def list_versions(base_path: str) -> list:
    """The versions under base_path, ascending."""
    return sorted(version_directories(base_path))


def aspired_versions(model_config, available_on_disk: list) -> list:
    """The versions the config's model_version_policy wants, from those on disk."""
    policy = model_config.model_version_policy
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        return sorted(available_on_disk)
    if which == "specific":
        wanted = set(policy.specific.versions)
        return sorted(v for v in available_on_disk if v in wanted)
    num_versions = policy.latest.num_versions if which == "latest" else 1
    num_versions = num_versions or 1
    return sorted(available_on_disk)[-num_versions:]


def files_fingerprint(path: str) -> tuple:
    """Names, sizes and mtimes of every file under path: changes when a copy progresses."""
    entries = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            file_path = os.path.join(root, name)
            try:
                stat = os.stat(file_path)
            except OSError:  # removed while we walked: the next poll sees the change
                continue
            entries.append((os.path.relpath(file_path, path), stat.st_size, stat.st_mtime_ns))
    return (path, tuple(entries))


class ModelManager:
    """Serves `Servable`s by (name, version | label); keeps them in step with the disk."""

    def __init__(self, config, file_system_poll_wait_seconds: float = 1,
                 servable_factory=None, allow_version_labels_for_unavailable_models=False,
                 max_num_load_retries: int = MAX_NUM_LOAD_RETRIES,
                 load_retry_interval_micros: int = LOAD_RETRY_INTERVAL_MICROS,
                 on_versions_changed=None):
        """on_versions_changed(): called after a poll that loaded or unloaded versions (the
        server's heap.settle)."""
        self._lock = threading.RLock()
        self._poll_lock = threading.Lock()  # one poll (load/unload pass) at a time
        self._models = {}
        self._poll_seconds = file_system_poll_wait_seconds
        self._servable_factory = servable_factory or _default_servable_factory
        self._allow_unavailable_labels = allow_version_labels_for_unavailable_models
        self._max_num_load_retries = max(0, max_num_load_retries)
        # Negative means no wait between retries, as in TF Serving.
        self._load_retry_interval_seconds = max(0, load_retry_interval_micros) / 1e6
        self._stop = threading.Event()
        self._thread = None
        self._retired_states = {}  # model name -> states of a model dropped by a reload
        self._on_versions_changed = on_versions_changed
        self._served_at_last_change = frozenset()  # the servables on_versions_changed saw
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
        """Serves exactly the models in `config`; returns once their versions are loaded.

        Refused, changing nothing, if a model it adds or moves has no version on disk
        that its policy wants: applying it would leave that model nothing to serve.
        """
        with self._poll_lock:
            self._refuse_models_without_versions(_validated_model_configs(config))
            self._apply_config(config)
            self._poll_once()
            self._apply_labels()
            # Recorded only once labels applied too, so that the config-file poller
            # retries a config whose labels named a version that was not loaded yet.
            self._config = config

    def _refuse_models_without_versions(self, model_configs):
        """TF Serving's servable_versions_always_present check, with its messages."""
        for model_config in model_configs:
            with self._lock:
                current = self._models.get(model_config.name)
            if current is not None and _same_versions_source(current.config, model_config):
                continue  # e.g. only its labels change: whatever it serves stays
            name, base_path = model_config.name, model_config.base_path
            if not os.path.exists(base_path):
                raise errors.invalid_argument(
                    f"Could not find base path {base_path} for servable {name}")
            if not aspired_versions(model_config, list_versions(base_path)):
                raise errors.not_found(
                    f"Unable to find a numerical version path for servable {name} at: "
                    f"{base_path}")

    def _apply_config(self, config):
        model_configs = _validated_model_configs(config)
        names = {model_config.name for model_config in model_configs}
        with self._lock:
            for name in list(self._models):
                if name not in names:
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
        if self._on_versions_changed is not None:
            with self._lock:  # a reload's retired models count: they were loaded
                served = frozenset(id(servable) for model in self._models.values()
                                   for servable in model.servables.values())
            if served != self._served_at_last_change:
                self._served_at_last_change = served
                self._on_versions_changed()

    def _reconcile(self, name, model):
        base_path = model.config.base_path
        folders = _version_folders(base_path)
        self._warn_duplicate_folders(name, model, folders)
        on_disk = {version: os.path.join(base_path, names[-1])
                   for version, names in folders.items()}
        wanted = aspired_versions(model.config, list(on_disk))
        if not wanted:
            # Never unload a model's last versions because its folder looks empty (a
            # transient listing, a push in progress): only a config that drops it does.
            if not model.warned_empty:
                log.warning("No versions of servable %s found under base path %s. Did you "
                            "forget to name your leaf directory as a number (eg. '/1/')?%s",
                            name, base_path, " Keeping the versions it serves."
                            if model.servables else "")
            model.warned_empty = True
            return
        model.warned_empty = False
        for version in list(model.failed_files):
            if version not in wanted:  # un-aspired: a failure is forgotten, as in TF Serving
                del model.failed_files[version]
        for version in sorted(wanted, reverse=True):  # newest first, as TF Serving loads
            if version in model.servables:
                continue
            failed_files = model.failed_files.get(version)
            if failed_files is not None:
                if failed_files == files_fingerprint(on_disk[version]):
                    continue
                log.info("Files of servable version {name: %s version: %d} changed since "
                         "its load failed; loading it again", name, version)
            self._load(name, model, version, on_disk[version])
        self._unload_unaspired(name, model, wanted)

    def _warn_duplicate_folders(self, name, model, folders):
        for version, names in folders.items():
            if len(names) > 1 and (version, tuple(names)) not in model.warned_duplicates:
                model.warned_duplicates.add((version, tuple(names)))
                log.warning("Duplicate version directories detected for servable %s. Version "
                            "%d will be loaded from %s, %s will be ignored.", name, version,
                            names[-1], ", ".join(names[:-1]))

    def _unload_unaspired(self, name, model, wanted):
        """AvailabilityPreservingPolicy: while no wanted version serves, keep the newest
        unwanted one; once one serves, unload every unwanted version."""
        with self._lock:
            unaspired = sorted(v for v in model.servables if v not in wanted)
            if not any(v in model.servables for v in wanted):
                unaspired = unaspired[:-1]
            for version in unaspired:
                model.states[version] = VersionState(version, UNLOADING)
                model.servables.pop(version).close()
                model.states[version] = VersionState(version, END)
                log.info("Unloaded servable version {name: %s version: %d}", name, version)

    def _load(self, name, model, version, path):
        """Loads one version, retrying as TF Serving's LoaderHarness does: up to
        --max_num_load_retries more tries, --load_retry_interval_micros apart, given up
        early if the version stops being wanted or the server stops."""
        with self._lock:
            model.states[version] = VersionState(version, LOADING)
        description = f"Loading servable: {{name: {name} version: {version}}}"
        log.info("Loading servable version {name: %s version: %d} from %s", name, version,
                 path)
        started = time.monotonic()
        retry = 0
        while True:
            fingerprint = files_fingerprint(path)
            try:
                servable = self._servable_factory(name, version, path)
                break
            except Exception as e:  # any load failure is reported in the version status
                code, message = _error_code_and_message(e)
                log.error("%s failed: %s", description, message)
            if retry >= self._max_num_load_retries:
                if self._max_num_load_retries:
                    log.info("Retrying of %s exhausted max_num_retries: %d", description,
                             self._max_num_load_retries)
                return self._record_failure(model, version, fingerprint, code, message)
            if self._stop.wait(self._load_retry_interval_seconds) or \
                    not self._still_wanted(model, version, path):
                log.info("Retrying of %s was cancelled.", description)
                return self._record_failure(model, version, fingerprint, code, message)
            retry += 1
            log.info("Retrying of %s retry: %d", description, retry)
        with self._lock:
            model.servables[version] = servable
            model.states[version] = VersionState(version, AVAILABLE)
            model.failed_files.pop(version, None)
        log.info("Successfully loaded servable version {name: %s version: %d} in %.1fs",
                 name, version, time.monotonic() - started)

    def _record_failure(self, model, version, fingerprint, code, message):
        """The version stays failed until its files change (see _reconcile)."""
        with self._lock:
            model.failed_files[version] = fingerprint
            model.states[version] = VersionState(version, END, code, message)

    @staticmethod
    def _still_wanted(model, version, path) -> bool:
        on_disk = version_directories(model.config.base_path)
        return (version in aspired_versions(model.config, list(on_disk))
                and os.path.join(model.config.base_path, on_disk[version]) == path)


def _validated_model_configs(config) -> list:
    """The config's model entries, or INVALID_ARGUMENT for what TF Serving refuses (and for a
    logging_config this server cannot write)."""
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
        request_logging.check_logging_config(model_config)
    return model_configs


def _same_versions_source(old_config, new_config) -> bool:
    """Same base path and version policy: the same versions would be served."""
    return (old_config.base_path == new_config.base_path
            and old_config.model_version_policy == new_config.model_version_policy)


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
