"""Release actions in ML Metadata: every move of the `canary` or `stable` label
of a served model (pipeline/release/) is one `ModelRelease` execution.

Its properties say what was done (action: canary, promote or rollback), to which
version, why, and where both labels point afterwards; its INPUT event points at
the version's PushedModel, so lineage walks from a pushed model to its releases.
All executions of one model share a `model_release` context named by the model.
"""
import dataclasses

from ml_metadata import errors as mlmd_errors
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from metadata import serving_checks

Store = metadata_store.MetadataStore
Execution = metadata_store_pb2.Execution
Event = metadata_store_pb2.Event

EXECUTION_TYPE = "ModelRelease"
CONTEXT_TYPE = "model_release"  # one context per served model name
PUSHED_MODEL_KEY = "pushed_model"  # the INPUT event's key, as TFX names a Pusher's output
CANARY, PROMOTE, ROLLBACK = "canary", "promote", "rollback"
ACTIONS = (CANARY, PROMOTE, ROLLBACK)
_PROPERTIES = ("action", "model_name", "version", "reason", "stable_version",
               "canary_version")


@dataclasses.dataclass
class ReleaseRecord:
    """One ModelRelease execution, as read back. Versions are serving version
    folder names, as a PushedModel's pushed_version."""
    execution_id: int
    action: str
    model_name: str
    version: str  # the version the action was about
    reason: str
    stable_version: str  # where the labels point after the action
    canary_version: str
    time: float  # epoch seconds
    pushed_model_id: int | None


def _execution_type_id(store: Store) -> int:
    return store.put_execution_type(metadata_store_pb2.ExecutionType(
        name=EXECUTION_TYPE,
        properties={name: metadata_store_pb2.STRING for name in _PROPERTIES}))


def _context(store: Store, model_name: str) -> metadata_store_pb2.Context:
    type_id = store.put_context_type(metadata_store_pb2.ContextType(name=CONTEXT_TYPE))
    existing = store.get_context_by_type_and_name(CONTEXT_TYPE, model_name)
    if existing is not None:
        return existing
    context = metadata_store_pb2.Context(type_id=type_id, name=model_name)
    [context.id] = store.put_contexts([context])
    return context


def record(store: Store, model_name: str, action: str, version, reason: str,
           stable_version, canary_version) -> ReleaseRecord:
    """Writes one release action; the PushedModel of `version` becomes its input
    (none for a version no Pusher of this store recorded)."""
    if action not in ACTIONS:
        raise ValueError(f"release action {action!r} is not one of {', '.join(ACTIONS)}")
    execution = Execution(type_id=_execution_type_id(store),
                          last_known_state=Execution.COMPLETE)
    values = {"action": action, "model_name": model_name, "version": version,
              "reason": reason, "stable_version": stable_version,
              "canary_version": canary_version}
    for name, value in values.items():
        execution.properties[name].string_value = "" if value is None else str(value)
    pushed = serving_checks.pushed_model_of_version(store, str(version))
    inputs = []
    if pushed is not None:
        event = Event(type=Event.INPUT)
        event.path.steps.add().key = PUSHED_MODEL_KEY
        event.path.steps.add().index = 0
        inputs.append((pushed, event))
    execution_id, _, _ = store.put_execution(execution, inputs, [_context(store, model_name)])
    [written] = store.get_executions_by_id([execution_id])
    return _record(store, written)


def _record(store: Store, execution: Execution) -> ReleaseRecord:
    values = {name: execution.properties[name].string_value for name in _PROPERTIES}
    inputs = [e.artifact_id for e in store.get_events_by_execution_ids([execution.id])
              if e.type == Event.INPUT]
    return ReleaseRecord(execution_id=execution.id, time=execution.create_time_since_epoch / 1000,
                         pushed_model_id=inputs[0] if inputs else None, **values)


def history(store: Store, model_name: str) -> list[ReleaseRecord]:
    """Every release action of the model, oldest first."""
    try:
        context = store.get_context_by_type_and_name(CONTEXT_TYPE, model_name)
    except mlmd_errors.NotFoundError:  # a store without releases yet
        return []
    if context is None:
        return []
    executions = sorted(store.get_executions_by_context(context.id),
                        key=lambda e: (e.create_time_since_epoch, e.id))
    return [_record(store, e) for e in executions]


def label_since(releases: list[ReleaseRecord], label: str) -> ReleaseRecord | None:
    """The action from which `label` ("stable" or "canary") has pointed at its
    current version without a break: it says since when, and why."""
    if not releases:
        return None
    current = getattr(releases[-1], f"{label}_version")
    first = None
    for release in reversed(releases):
        if getattr(release, f"{label}_version") != current:
            break
        first = release
    # The action that moved the label there, not a later one that left it alone.
    return first


def rolled_back_versions(releases: list[ReleaseRecord]) -> set[str]:
    return {r.version for r in releases if r.action == ROLLBACK}


def previous_stable_versions(releases: list[ReleaseRecord]) -> list[str]:
    """Versions that were stable before the current one, newest first, without
    the ones rolled back since and without repeats."""
    if not releases:
        return []
    current = releases[-1].stable_version
    bad = rolled_back_versions(releases)
    seen, found = {current}, []
    for release in reversed(releases):
        version = release.stable_version
        if version and version not in seen and version not in bad:
            found.append(version)
        seen.add(version)
    return found


def releases_of_version(store: Store, model_name: str, version: str) -> list[ReleaseRecord]:
    return [r for r in history(store, model_name) if r.version == str(version)]


def role_of_version(releases: list[ReleaseRecord], version: str
                    ) -> tuple[str, ReleaseRecord] | None:
    """What the version is now, and the action that made it so: ("stable", ...),
    ("canary", ...), ("rolled back", ...), or None if it never had a label."""
    version = str(version)
    if releases and releases[-1].stable_version == version:
        return "stable", label_since(releases, "stable")
    if releases and releases[-1].canary_version == version:
        return "canary", label_since(releases, "canary")
    rolled_back = [r for r in releases if r.action == ROLLBACK and r.version == version]
    if rolled_back:
        return "rolled back", rolled_back[-1]
    return None
