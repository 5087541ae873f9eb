"""The release steps: a new version becomes the canary, the canary is promoted to
stable, or the last step is rolled back. Each writes the serving config file and
records a ModelRelease execution in ML Metadata.

Both labels always name versions the server has loaded, so a request on
/labels/stable or /labels/canary never fails because a label moved:
- a label moves onto a version only after an earlier write added it to the
  loaded (`specific`) versions and the server reports it AVAILABLE, or no
  server answers at all (a server that starts later loads its versions
  before it applies labels, as TF Serving does);
- a version leaves the loaded versions only in a later write, once the server
  resolves both labels to their new versions (tidy()).
"""
import dataclasses

from metadata import releases
from pipeline import config as pipeline_config
from pipeline import run_lock
from pipeline.release import model_server, retention, serving_config
from pipeline.release.serving_config import CANARY, STABLE, ServedVersions

RELEASE_LOCK = "release.lock"  # beside the serving config: one release step at a time


class Refused(RuntimeError):
    """The step cannot be done now; the message says why and what to do."""


@dataclasses.dataclass
class Release:
    """Where one model's release state lives, and how to ask its server."""
    cfg: pipeline_config.PipelineConfig
    store: releases.Store  # writable
    # The server's Prometheus page; its REST API is on the same port. None: do
    # not ask the server (label moves wait for a step that may).
    metrics_url: str | None

    model_name: str = pipeline_config.MODEL_NAME

    @property
    def path(self):
        return self.cfg.serving_config_path

    def read(self) -> tuple[object, ServedVersions]:
        config = serving_config.read(self.path)
        return config, serving_config.served_versions(config, self.model_name)

    def write(self, config, served: ServedVersions) -> None:
        serving_config.write(self.path, serving_config.with_served_versions(
            config, self.model_name, self.cfg.push_base_directory, served))

    def record(self, action: str, version, reason: str, served: ServedVersions):
        return releases.record(self.store, self.model_name, action, version, reason,
                               served.stable, served.canary)

    def history(self) -> list[releases.ReleaseRecord]:
        return releases.history(self.store, self.model_name)

    def lock(self):
        return run_lock.hold(self.path.parent / RELEASE_LOCK, "release step", wait=True)


def pending_version(release: Release, served: ServedVersions) -> int | None:
    """The newest loaded version newer than both labels and never rolled back:
    pushed, waiting to become the canary."""
    newest_labelled = max(served.labelled, default=-1)
    rolled_back = releases.rolled_back_versions(release.history())
    waiting = [v for v in served.loaded if v > newest_labelled and str(v) not in rolled_back]
    return max(waiting, default=None)


def rollback_target(release: Release, served: ServedVersions) -> int | None:
    """The newest earlier stable version that was not rolled back and is on disk."""
    on_disk = set(retention.versions_on_disk(release.cfg.serving_model_dir))
    for version in releases.previous_stable_versions(release.history()):
        if version.isdigit() and int(version) in on_disk and int(version) != served.stable:
            return int(version)
    return None


@dataclasses.dataclass(frozen=True)
class ServerAnswer:
    """Whether a label may move onto a version, and why (or why not)."""
    may_label: bool
    load_failed: bool  # the server gave up loading it (state END with an error)
    why: str


def _ask_server(release: Release, version: int, timeout: float) -> ServerAnswer:
    """A label may move onto `version` when the server reports it AVAILABLE, or
    when no server answers at all."""
    if release.metrics_url is None:
        return ServerAnswer(False, False, "no server address given (--serving-metrics-url)")
    try:
        state, message = model_server.wait_until_available(
            release.metrics_url, release.model_name, version, timeout)
    except model_server.ServerUnreachable:
        return ServerAnswer(True, False, (
            f"no server answered at {release.metrics_url} (a server started on the "
            "config loads its versions before it applies labels)"))
    if state == "AVAILABLE":
        return ServerAnswer(True, False, "loaded by the server")
    return ServerAnswer(False, state == "END", (
        f"the server at {release.metrics_url} reports version {version} {state}"
        + (f": {message}" if message else "")))


def add_version(release: Release, version: int, reason: str) -> str:
    """Step 1 for a pushed version: the server loads it. Without a config file,
    the version is labelled stable and canary at once: no server follows a file
    that does not exist, and a server started on it loads before it labels."""
    with release.lock():
        config, served = release.read()
        if config is None:
            first = ServedVersions((version,), version, version)
            release.write(config, first)
            release.record(releases.PROMOTE, version,
                           f"first version in the serving config {release.path}; {reason}",
                           first)
            return f"Version {version} is stable and canary (a new serving config)."
        if version not in served.loaded:
            release.write(config, dataclasses.replace(
                served, loaded=tuple(sorted({*served.loaded, version}))))
    return f"Version {version} added to the loaded versions in {release.path}."


def label_pending(release: Release, reason: str, timeout: float | None = None) -> str | None:
    """Step 2: the pending version becomes the canary once the server loaded it;
    a version that failed to load is dropped and recorded as rolled back."""
    timeout = release.cfg.canary_load_timeout_seconds if timeout is None else timeout
    with release.lock():
        config, served = release.read()
        version = pending_version(release, served)
        if version is None:
            return None
        answer = _ask_server(release, version, timeout)
        why = answer.why
        if not answer.may_label:
            if answer.load_failed:  # it will not get better by waiting
                dropped = dataclasses.replace(
                    served, loaded=tuple(v for v in served.loaded if v != version))
                release.write(config, dropped)
                release.record(releases.ROLLBACK, version, f"never served: {why}", dropped)
                return f"Version {version} failed to load and was dropped: {why}."
            return (f"Version {version} is pending: {why}; the next "
                    "`python -m pipeline.release check` makes it the canary.")
        if served.stable is None:  # a config file written before any release
            first = dataclasses.replace(served, stable=version, canary=version)
            release.write(config, first)
            release.record(releases.PROMOTE, version,
                           f"first labelled version; {reason}; {why}", first)
            return f"Version {version} is stable and canary (the first labelled version)."
        canary = dataclasses.replace(served, canary=version)
        release.write(config, canary)
        release.record(releases.CANARY, version,
                       f"{reason}; {why}; stable stays {served.stable}", canary)
    return f"Version {version} is the canary; stable stays version {served.stable}."


def no_release_yet(release: Release) -> str:
    return (f"No release yet: {release.path} labels no version of {release.model_name} "
            "(the pipeline writes it when it pushes a model).")


def promote(release: Release, reason: str) -> str:
    with release.lock():
        config, served = release.read()
        if served.stable is None:
            raise Refused(no_release_yet(release))
        if served.canary is None or served.canary == served.stable:
            pending = pending_version(release, served)
            raise Refused(
                f"No canary to promote: stable and canary are both version {served.stable}"
                + (f"; version {pending} is pending (not loaded yet: "
                   "`python -m pipeline.release check` labels it)" if pending else "") + ".")
        promoted = dataclasses.replace(served, stable=served.canary)
        release.write(config, promoted)
        release.record(releases.PROMOTE, served.canary, reason, promoted)
    return f"Version {served.canary} is stable (was {served.stable})."


def rollback(release: Release, reason: str) -> str:
    """Undoes the last step: a canary on trial goes back to the stable version;
    else stable (and canary) go back to the previous good stable version."""
    with release.lock():
        config, served = release.read()
        if served.stable is None:
            raise Refused(no_release_yet(release))
        if served.canary is not None and served.canary != served.stable:
            back = dataclasses.replace(served, canary=served.stable)
            release.write(config, back)
            release.record(releases.ROLLBACK, served.canary, reason, back)
            return (f"Canary version {served.canary} rolled back: canary is stable version "
                    f"{served.stable} again.")
        target = rollback_target(release, served)
        if target is None:
            raise Refused(f"Nothing to roll back to: no earlier stable version of "
                          f"{release.model_name} that was not rolled back is still in "
                          f"{release.cfg.serving_model_dir}.")
        if target not in served.loaded:
            release.write(config, dataclasses.replace(
                served, loaded=tuple(sorted({*served.loaded, target}))))
        answer = _ask_server(release, target, release.cfg.canary_load_timeout_seconds)
        if not answer.may_label:
            raise Refused(f"Cannot roll back to version {target} yet: {answer.why}. It is in the "
                          "loaded versions now; run the rollback again once it is AVAILABLE.")
        back = dataclasses.replace(served, loaded=tuple(sorted({*served.loaded, target})),
                                   stable=target, canary=target)
        release.write(config, back)
        release.record(releases.ROLLBACK, served.stable, reason, back)
    return f"Stable version {served.stable} rolled back: stable and canary are version {target}."


def tidy(release: Release) -> str | None:
    """Unloads what no label needs, once the server applied the labels, and
    deletes the version folders retention allows. Not the rollback target:
    it stays loaded, so a rollback needs no load."""
    with release.lock():
        config, served = release.read()
        if served.stable is None:
            return None
        keep = served.labelled | {rollback_target(release, served),
                                  pending_version(release, served)}
        unneeded = [v for v in served.loaded if v not in keep]
        notes = []
        if unneeded and release.metrics_url is not None:
            labels = {STABLE: served.stable, CANARY: served.canary}
            try:
                applied = model_server.wait_until_labels_applied(
                    release.metrics_url, release.model_name, labels,
                    release.cfg.canary_load_timeout_seconds)
            except model_server.ServerUnreachable:
                applied = True  # no server: nothing to fail
            if applied:
                served = dataclasses.replace(
                    served, loaded=tuple(v for v in served.loaded if v not in unneeded))
                release.write(config, served)
                notes.append(f"unloaded version(s) {', '.join(map(str, unneeded))}")
        deleted = retention.delete_versions(release.cfg.serving_model_dir, served,
                                            release.cfg.versions_kept)
        if deleted:
            notes.append(f"deleted version folder(s) {', '.join(map(str, deleted))}")
    return "Tidied: " + "; ".join(notes) + "." if notes else None
