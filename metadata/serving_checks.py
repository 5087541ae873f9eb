"""Serving checks in ML Metadata: what `python -m pipeline.monitor` records about
each look at the server's request logs (training–serving skew per model version
and time window), and the typed records other parts read back.

One check is one `ServingMonitor` execution, in a `serving_monitor` context named
by the request log folder (so "since the last check of these logs" is one query).
Its INPUT events point at each judged `PushedModel` and the training statistics
it was compared with; its OUTPUT events at one `ExampleStatistics` (the serving
statistics, laid out as StatisticsGen does) and one `ServingSkew` per model
version and time window. Events carry TFX's (key, index) paths.
"""
import dataclasses
import json
import os
import time

from ml_metadata import errors as mlmd_errors
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

Store = metadata_store.MetadataStore
Artifact = metadata_store_pb2.Artifact
Execution = metadata_store_pb2.Execution
Event = metadata_store_pb2.Event

EXECUTION_TYPE = "ServingMonitor"
CONTEXT_TYPE = "serving_monitor"  # one context per request log folder
SKEW_TYPE = "ServingSkew"
STATISTICS_TYPE = "ExampleStatistics"  # TFX's type, shared with StatisticsGen
PUSHED_MODEL_TYPE = "PushedModel"

# Event keys, as TFX names a component's inputs and outputs.
PUSHED_MODEL_KEY = "pushed_model"
TRAINING_STATISTICS_KEY = "training_statistics"
SERVING_STATISTICS_KEY = "serving_statistics"
SKEW_KEY = "serving_skew"

SERVING_SPLIT = "serving"
STATISTICS_FILE = "FeatureStats.pb"  # as StatisticsGen writes it
SKEW_FILE = "skew.json"
MONITORING_DIR = "monitoring"  # under the pipeline's output folder


@dataclasses.dataclass
class SkewResult:
    """What a check found for one model version in one time window (written)."""
    model_name: str
    model_version: str
    window_start: int  # epoch seconds, inclusive
    window_end: int  # epoch seconds, exclusive
    requests: int  # logged requests in the window
    examples: int  # rows (tf.Examples) they held
    distances: dict[str, float]  # feature -> distance, every compared feature
    thresholds: dict[str, float]  # feature -> threshold of its skew comparator
    skewed_features: list[str]  # distance above threshold
    anomalous_features: list[str]  # schema anomalies in the SERVING environment
    pushed_model_id: int
    training_statistics_id: int
    serving_statistics: bytes  # a serialized DatasetFeatureStatisticsList
    details: dict = dataclasses.field(default_factory=dict)  # more for skew.json

    @property
    def skewed(self) -> bool:
        return bool(self.skewed_features)


@dataclasses.dataclass
class SkewRecord:
    """One ServingSkew artifact, as read back."""
    artifact_id: int
    uri: str
    check_id: int  # the ServingMonitor execution
    created: int  # epoch seconds
    model_name: str
    model_version: str
    window_start: int
    window_end: int
    requests: int
    skewed: bool
    skewed_features: list[str]
    anomalous_features: list[str]
    distances: dict[str, float]
    thresholds: dict[str, float]
    pushed_model_id: int | None
    serving_statistics_uri: str | None

    @property
    def alarm(self) -> bool:
        return self.skewed or bool(self.anomalous_features)


@dataclasses.dataclass
class CheckRecord:
    """One ServingMonitor execution, as read back, with its ServingSkew outputs."""
    execution_id: int
    request_logs: str
    checked_from: int  # epoch seconds
    checked_until: int
    records_read: int
    files_skipped: int
    created: int  # epoch seconds
    state: str  # COMPLETE, or RUNNING if the check died
    skews: list[SkewRecord]

    @property
    def alarm(self) -> bool:
        return any(skew.alarm for skew in self.skews)


def monitoring_dir(output_dir: os.PathLike | str) -> str:
    return os.path.join(str(output_dir), MONITORING_DIR)


def _type_id(store: Store, name: str, kind: str) -> int:
    """The id of a type, created without properties if the store lacks it;
    an existing type (TFX's ExampleStatistics) is used as TFX defined it."""
    getter = {"artifact": store.get_artifact_type, "execution": store.get_execution_type,
              "context": store.get_context_type}[kind]
    try:
        return getter(name).id
    except mlmd_errors.NotFoundError:  # a store that never saw this type
        putter = {"artifact": (store.put_artifact_type, metadata_store_pb2.ArtifactType),
                  "execution": (store.put_execution_type, metadata_store_pb2.ExecutionType),
                  "context": (store.put_context_type, metadata_store_pb2.ContextType)}[kind]
        return putter[0](putter[1](name=name))


def _set(properties, name: str, value):
    if isinstance(value, bool):
        properties[name].int_value = int(value)
    elif isinstance(value, int):
        properties[name].int_value = value
    elif isinstance(value, float):
        properties[name].double_value = value
    else:
        properties[name].string_value = str(value)


def _value(properties, name: str, default=None):
    if name not in properties:
        return default
    value = properties[name]
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else default


def _event(type_, key: str, index: int) -> Event:
    event = Event(type=type_)
    event.path.steps.add().key = key
    event.path.steps.add().index = index
    return event


def _split_list(text: str) -> list[str]:
    return [item for item in (text or "").split(",") if item]


def start_check(store: Store, request_logs: str, checked_from: int, checked_until: int,
                records_read: int, files_skipped: int) -> Execution:
    """Records a check as RUNNING before its files are written, so a check that
    dies half way shows in the store (and is not taken as the last one)."""
    execution = Execution(type_id=_type_id(store, EXECUTION_TYPE, "execution"),
                          last_known_state=Execution.RUNNING)
    for name, value in {"request_logs": request_logs, "checked_from": checked_from,
                        "checked_until": checked_until, "records_read": records_read,
                        "files_skipped": files_skipped}.items():
        _set(execution.custom_properties, name, value)
    context = store.get_context_by_type_and_name(CONTEXT_TYPE, request_logs)
    if context is None:
        context = metadata_store_pb2.Context(
            type_id=_type_id(store, CONTEXT_TYPE, "context"), name=request_logs)
    execution.id, _, [context.id] = store.put_execution(execution, [], [context])
    return execution


def _statistics_artifact(store: Store, uri: str, serialized: bytes) -> Artifact:
    split_dir = os.path.join(uri, f"Split-{SERVING_SPLIT}")
    os.makedirs(split_dir, exist_ok=True)
    with open(os.path.join(split_dir, STATISTICS_FILE), "wb") as f:
        f.write(serialized)
    artifact = Artifact(type_id=_type_id(store, STATISTICS_TYPE, "artifact"), uri=uri,
                        state=Artifact.LIVE)
    artifact_type = store.get_artifact_types_by_id([artifact.type_id])[0]
    split_names = json.dumps([SERVING_SPLIT])
    # TFX's ExampleStatistics keeps split_names as a typed property.
    if "split_names" in artifact_type.properties:
        artifact.properties["split_names"].string_value = split_names
    else:
        artifact.custom_properties["split_names"].string_value = split_names
    return artifact


def _skew_artifact(store: Store, uri: str, result: SkewResult) -> Artifact:
    values = {"model_name": result.model_name, "model_version": result.model_version,
              "window_start": result.window_start, "window_end": result.window_end,
              "requests": result.requests, "examples": result.examples,
              "skewed": int(result.skewed),
              "skewed_features": ",".join(result.skewed_features),
              "anomalous_features": ",".join(result.anomalous_features)}
    for feature, distance in result.distances.items():
        values[f"distance:{feature}"] = float(distance)
    for feature, threshold in result.thresholds.items():
        values[f"threshold:{feature}"] = float(threshold)
    artifact = Artifact(type_id=_type_id(store, SKEW_TYPE, "artifact"), uri=uri,
                        state=Artifact.LIVE)
    for name, value in values.items():
        _set(artifact.custom_properties, name, value)
    os.makedirs(uri, exist_ok=True)
    with open(os.path.join(uri, SKEW_FILE), "w") as f:
        json.dump({**values, **result.details}, f, indent=2, sort_keys=True)
    return artifact


def finish_check(store: Store, execution: Execution, results: list[SkewResult],
                 output_dir: os.PathLike | str) -> int:
    """Writes each result's files under <output_dir>/monitoring/<execution id>/
    and links them to the execution, which becomes COMPLETE. Returns its id."""
    base = os.path.join(monitoring_dir(output_dir), str(execution.id))
    artifacts_and_events = []
    inputs_seen: dict[tuple[str, int], int] = {}
    for index, result in enumerate(results):
        for key, artifact_id in ((PUSHED_MODEL_KEY, result.pushed_model_id),
                                 (TRAINING_STATISTICS_KEY, result.training_statistics_id)):
            # Two windows of one version share its inputs: one event each.
            if (key, artifact_id) not in inputs_seen:
                inputs_seen[key, artifact_id] = len(
                    [k for k, _ in inputs_seen if k == key])
                [existing] = store.get_artifacts_by_id([artifact_id])
                artifacts_and_events.append(
                    (existing, _event(Event.INPUT, key, inputs_seen[key, artifact_id])))
        statistics = _statistics_artifact(
            store, os.path.join(base, SERVING_STATISTICS_KEY, str(index)),
            result.serving_statistics)
        skew = _skew_artifact(store, os.path.join(base, SKEW_KEY, str(index)), result)
        artifacts_and_events.append((statistics, _event(Event.OUTPUT, SERVING_STATISTICS_KEY, index)))
        artifacts_and_events.append((skew, _event(Event.OUTPUT, SKEW_KEY, index)))
    execution.last_known_state = Execution.COMPLETE
    execution.custom_properties["finished_at"].int_value = int(time.time())
    store.put_execution(execution, artifacts_and_events, [])
    return execution.id


# Reading -----------------------------------------------------------------


def _skew_record(store: Store, artifact: Artifact) -> SkewRecord:
    properties = artifact.custom_properties
    output = next((e for e in store.get_events_by_artifact_ids([artifact.id])
                   if e.type == Event.OUTPUT), None)
    check_id = output.execution_id if output else 0
    index = output.path.steps[1].index if output and len(output.path.steps) > 1 else None
    pushed_model_id = statistics_uri = None
    if check_id:
        check_events = store.get_events_by_execution_ids([check_id])
        by_key = {(e.path.steps[0].key, e.type): [] for e in check_events if e.path.steps}
        for e in check_events:
            if e.path.steps:
                by_key[e.path.steps[0].key, e.type].append(e)
        statistics_ids = [e.artifact_id for e in by_key.get((SERVING_STATISTICS_KEY, Event.OUTPUT), [])
                          if e.path.steps[1].index == index]
        if statistics_ids:
            statistics_uri = store.get_artifacts_by_id(statistics_ids)[0].uri
        version = _value(properties, "model_version", "")
        for e in by_key.get((PUSHED_MODEL_KEY, Event.INPUT), []):
            [pushed] = store.get_artifacts_by_id([e.artifact_id])
            if _value(pushed.custom_properties, "pushed_version") == version:
                pushed_model_id = pushed.id
    return SkewRecord(
        artifact_id=artifact.id, uri=artifact.uri, check_id=check_id,
        created=artifact.create_time_since_epoch // 1000,
        model_name=_value(properties, "model_name", ""),
        model_version=_value(properties, "model_version", ""),
        window_start=_value(properties, "window_start", 0),
        window_end=_value(properties, "window_end", 0),
        requests=_value(properties, "requests", 0),
        skewed=bool(_value(properties, "skewed", 0)),
        skewed_features=_split_list(_value(properties, "skewed_features", "")),
        anomalous_features=_split_list(_value(properties, "anomalous_features", "")),
        distances={name.split(":", 1)[1]: value.double_value
                   for name, value in properties.items() if name.startswith("distance:")},
        thresholds={name.split(":", 1)[1]: value.double_value
                    for name, value in properties.items() if name.startswith("threshold:")},
        pushed_model_id=pushed_model_id, serving_statistics_uri=statistics_uri)


def _check_record(store: Store, execution: Execution) -> CheckRecord:
    properties = execution.custom_properties
    skew_ids = [e.artifact_id for e in store.get_events_by_execution_ids([execution.id])
                if e.type == Event.OUTPUT and e.path.steps
                and e.path.steps[0].key == SKEW_KEY]
    skews = [_skew_record(store, a) for a in store.get_artifacts_by_id(skew_ids)]
    return CheckRecord(
        execution_id=execution.id,
        request_logs=_value(properties, "request_logs", ""),
        checked_from=_value(properties, "checked_from", 0),
        checked_until=_value(properties, "checked_until", 0),
        records_read=_value(properties, "records_read", 0),
        files_skipped=_value(properties, "files_skipped", 0),
        created=execution.create_time_since_epoch // 1000,
        state=Execution.State.Name(execution.last_known_state),
        skews=sorted(skews, key=lambda s: (s.model_version, s.window_start)))


def _newest_first(executions) -> list[Execution]:
    return sorted(executions, key=lambda e: (e.create_time_since_epoch, e.id), reverse=True)


def checks(store: Store, request_logs: str | None = None,
           complete_only: bool = True) -> list[CheckRecord]:
    """Every check (of one request log folder if given), newest first."""
    if request_logs is not None:
        context = store.get_context_by_type_and_name(CONTEXT_TYPE, request_logs)
        executions = store.get_executions_by_context(context.id) if context else []
    else:
        try:
            executions = store.get_executions_by_type(EXECUTION_TYPE)
        except mlmd_errors.NotFoundError:
            executions = []
    if complete_only:
        executions = [e for e in executions if e.last_known_state == Execution.COMPLETE]
    return [_check_record(store, e) for e in _newest_first(executions)]


def latest_check(store: Store, request_logs: str | None = None) -> CheckRecord | None:
    """The newest complete check (of one request log folder if given)."""
    found = checks(store, request_logs)
    return found[0] if found else None


def resume_point(store: Store, request_logs: str) -> int | None:
    """Where the last complete check of these logs stopped, the next check's
    default start (epoch seconds); None: never checked."""
    last = latest_check(store, request_logs)
    return last.checked_until if last else None


def checks_of_pushed_model(store: Store, pushed_model_id: int) -> list[SkewRecord]:
    """The ServingSkew records that judged this PushedModel, newest first."""
    check_ids = {e.execution_id for e in store.get_events_by_artifact_ids([pushed_model_id])
                 if e.type == Event.INPUT}
    type_ids = {t.id for t in store.get_execution_types() if t.name == EXECUTION_TYPE}
    executions = [e for e in store.get_executions_by_id(list(check_ids))
                  if e.type_id in type_ids and e.last_known_state == Execution.COMPLETE]
    records = [skew for e in executions
               for skew in _check_record(store, e).skews
               if skew.pushed_model_id == pushed_model_id]
    return sorted(records, key=lambda s: (s.created, s.window_start, s.artifact_id),
                  reverse=True)


def pushed_model_of_version(store: Store, version: str) -> Artifact | None:
    """The PushedModel a Pusher recorded as pushed under this serving version."""
    try:
        candidates = store.get_artifacts_by_type(PUSHED_MODEL_TYPE)
    except mlmd_errors.NotFoundError:  # a store without a Pusher yet
        return None
    pushed = [a for a in candidates
              if _value(a.custom_properties, "pushed", 0) == 1
              and _value(a.custom_properties, "pushed_version") == str(version)]
    return max(pushed, key=lambda a: a.id) if pushed else None
