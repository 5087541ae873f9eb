"""Finds the model that was being served when this run's span arrived, with the
metrics it was pushed on and the statistics of the data it was trained on, so
that the span checks can measure decay and drift against that model.
"""
from ml_metadata.proto import metadata_store_pb2
from tfx.dsl.components.common import resolver

INPUT, OUTPUT = metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.OUTPUT

# Walks through ML Metadata from a PushedModel, one step per execution: the
# type of the execution that produced the artifacts at hand, then the event
# (input or output, by key) of that execution to follow.
TO_PUSH_TIME_EVALUATION = [
    (".Pusher", INPUT, "model_blessing"),  # the blessing the Pusher acted on
    (".Evaluator", OUTPUT, "evaluation"),  # the evaluation behind that blessing
]
TO_TRAINING_WINDOW_STATISTICS = [
    (".Pusher", INPUT, "model"),
    (".Trainer", INPUT, "transform_graph"),
    # Transform analyzes the train splits of the training window and records
    # their statistics before transformation.
    (".Transform", OUTPUT, "pre_transform_stats"),
]


def _is_pushed(pushed_model) -> bool:
    return pushed_model.get_int_custom_property("pushed") == 1


def _version(pushed_model) -> tuple[int, int]:
    version = pushed_model.get_string_custom_property("pushed_version")
    return (int(version) if version.isdigit() else 0, pushed_model.id)


def _step(store, artifact_ids, producer_type, event_type, key) -> list[int]:
    """Artifacts reached from `artifact_ids` through the executions of type
    `producer_type` that output them, by that execution's events of `key`."""
    events = store.get_events_by_artifact_ids(artifact_ids)
    producer_ids = {e.execution_id for e in events if e.type == OUTPUT}
    if not producer_ids:
        return []
    type_names = {t.id: t.name for t in store.get_execution_types()}
    # A cached execution outputs the same artifacts as the one it reuses, and
    # has the same inputs, so any of them leads to the same place.
    producers = [e.id for e in store.get_executions_by_id(list(producer_ids))
                 if type_names[e.type_id].endswith(producer_type)]
    found = [e.artifact_id for e in store.get_events_by_execution_ids(producers)
             if e.type == event_type and e.path.steps and e.path.steps[0].key == key]
    return sorted(set(found))


def _with_ids(artifacts, ids) -> list:
    """The artifacts of a channel whose ids are in `ids`, each once."""
    return list({a.id: a for a in artifacts if a.id in ids}.values())


def walk(store, pushed_model_id: int, steps) -> set[int]:
    artifact_ids = [pushed_model_id]
    for producer_type, event_type, key in steps:
        artifact_ids = _step(store, artifact_ids, producer_type, event_type, key)
        if not artifact_ids:
            break
    return set(artifact_ids)


class ServedModelStrategy(resolver.ResolverStrategy):
    """Input keys: `examples` (this run's span), `pushed_model`, `evaluation`,
    `statistics` (plain Channels over every run). Outputs the same keys, each
    empty when no model had been pushed before the span was ingested."""

    def resolve_artifacts(self, store, input_dict):
        examples = input_dict["examples"]
        nothing = {"examples": examples, "pushed_model": [], "evaluation": [],
                   "statistics": []}
        if not examples:
            return nothing
        # The model serving when the span arrived, not one trained on it since:
        # the span is then news to the model, and a rerun with nothing new
        # resolves the same model, so the checks and training stay cached.
        span_ingested = max(a.mlmd_artifact.create_time_since_epoch for a in examples)
        pushed = [m for m in input_dict["pushed_model"]
                  if _is_pushed(m) and m.mlmd_artifact.create_time_since_epoch < span_ingested]
        if not pushed:
            return nothing
        served = max(pushed, key=_version)
        evaluation_ids = walk(store, served.id, TO_PUSH_TIME_EVALUATION)
        statistics_ids = walk(store, served.id, TO_TRAINING_WINDOW_STATISTICS)
        return {
            "examples": examples,
            "pushed_model": [served],
            "evaluation": _with_ids(input_dict["evaluation"], evaluation_ids),
            "statistics": _with_ids(input_dict["statistics"], statistics_ids),
        }
