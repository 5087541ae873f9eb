"""Chooses the spans Transform, Trainer and Evaluator read: the latest N spans
that passed validation.

TFX's SpanRangeStrategy takes every Examples artifact ExampleGen made. A span
that failed the ValidationGate still has a live Examples artifact, and would
join the window as soon as a good span arrived after it. This follows ML
Metadata from each span, through StatisticsGen and ExampleValidator, to the
gate's verdict, and keeps only the spans the gate let through.
"""
from ml_metadata.proto import metadata_store_pb2
from tfx.dsl.components.common import resolver

from metadata.artifacts import span_of, version_of

# Executions on the path from a span to the gate's verdict, by type name suffix.
VALIDATION_PATH = (".StatisticsGen", ".ExampleValidator")
GATE = ".ValidationGate"
PASSED = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)


def _readers(store, artifact_ids) -> list[metadata_store_pb2.Execution]:
    events = store.get_events_by_artifact_ids(artifact_ids)
    ids = {e.execution_id for e in events if e.type == metadata_store_pb2.Event.INPUT}
    return store.get_executions_by_id(list(ids)) if ids else []


def _outputs(store, execution_ids) -> list[int]:
    events = store.get_events_by_execution_ids(execution_ids)
    return [e.artifact_id for e in events if e.type == metadata_store_pb2.Event.OUTPUT]


def passed_validation(store, examples_id: int) -> bool:
    """Did a ValidationGate execution that descends from this span succeed?"""
    type_names = {t.id: t.name for t in store.get_execution_types()}
    frontier = [examples_id]
    for _ in range(len(VALIDATION_PATH) + 1):
        readers = _readers(store, frontier) if frontier else []
        if any(type_names[e.type_id].endswith(GATE) and e.last_known_state in PASSED
               for e in readers):
            return True
        on_path = [e.id for e in readers if type_names[e.type_id].endswith(VALIDATION_PATH)]
        frontier = _outputs(store, on_path) if on_path else []
    return False


def _version_then_age(artifact):
    mlmd_artifact = artifact.mlmd_artifact
    return (version_of(mlmd_artifact), mlmd_artifact.create_time_since_epoch,
            mlmd_artifact.id)


class ValidatedSpansStrategy(resolver.ResolverStrategy):

    def __init__(self, num_spans: int):
        self._num_spans = num_spans

    def resolve_artifacts(self, store, input_dict):
        newest_per_span = {}
        for examples in sorted(input_dict["examples"], key=_version_then_age):
            if passed_validation(store, examples.id):
                # Later versions of a span win.
                newest_per_span[span_of(examples.mlmd_artifact)] = examples
        window = sorted(newest_per_span)[-self._num_spans:]
        return {"examples": [newest_per_span[span] for span in window]}
