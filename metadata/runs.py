"""Pipeline runs and their executions in ML Metadata: what the runner records
about a run (its trigger and outcome) and what it repairs after a crash.

A run is TFX's `pipeline_run` context, named by the run id. The runner
registers it before TFX does, with the trigger as custom properties, so even a
run killed in its first second says why it started.
"""
import time

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from metadata import artifacts

Store = metadata_store.MetadataStore
Execution = metadata_store_pb2.Execution
PIPELINE_RUN = "pipeline_run"  # TFX's context type for one run
UNFINISHED = (Execution.NEW, Execution.RUNNING, Execution.UNKNOWN)

# Custom properties of a pipeline_run context, written by pipeline/runner.py.
TRIGGER = "trigger"  # new span, schedule, decay, drift, manual, backfill
TRIGGER_DETAIL = "trigger_detail"  # e.g. "span 14: auc 0.61 below the bar 0.75"
SPAN = "span"  # the span the run ingested
OUTCOME = "outcome"  # pushed, not blessed, not retrained, cached, failed, stopped, abandoned
OUTCOME_DETAIL = "outcome_detail"  # the version, the anomalies, the error...
# Outcomes after which a span counts as handled; a stopped or abandoned run's
# span is run again.
FINAL_OUTCOMES = ("pushed", "not blessed", "not retrained", "cached", "failed", "ingested")


def _set(properties, name: str, value):
    if isinstance(value, int):
        properties[name].int_value = value
    else:
        properties[name].string_value = str(value)


def register_run(store: Store, run_id: str, **properties) -> metadata_store_pb2.Context:
    """Creates the run's context before TFX does; TFX then reuses it."""
    type_id = store.put_context_type(metadata_store_pb2.ContextType(name=PIPELINE_RUN))
    context = metadata_store_pb2.Context(type_id=type_id, name=run_id)
    for name, value in properties.items():
        _set(context.custom_properties, name, value)
    [context.id] = store.put_contexts([context])
    return context


def run_context(store: Store, run_id: str) -> metadata_store_pb2.Context | None:
    return store.get_context_by_type_and_name(PIPELINE_RUN, run_id)


def update_run(store: Store, run_id: str, **properties):
    context = run_context(store, run_id)
    for name, value in properties.items():
        _set(context.custom_properties, name, value)
    store.put_contexts([context])


def run_properties(context: metadata_store_pb2.Context) -> dict:
    return {name: getattr(value, value.WhichOneof("value"))
            for name, value in context.custom_properties.items() if value.WhichOneof("value")}


def all_runs(store: Store) -> list[metadata_store_pb2.Context]:
    """Every run, oldest first."""
    return sorted(store.get_contexts_by_type(PIPELINE_RUN),
                  key=lambda context: (context.create_time_since_epoch, context.id))


def handled_spans(store: Store) -> set[int]:
    """Spans whose run ended with a final outcome (pushed, failed, ...)."""
    handled = set()
    for context in all_runs(store):
        properties = run_properties(context)
        if properties.get(OUTCOME) in FINAL_OUTCOMES and SPAN in properties:
            handled.add(properties[SPAN])
    return handled


def last_run_with_trigger(store: Store, trigger: str) -> metadata_store_pb2.Context | None:
    matching = [c for c in all_runs(store) if run_properties(c).get(TRIGGER) == trigger]
    return matching[-1] if matching else None


def executions_of_run(store: Store, run_id: str) -> list[metadata_store_pb2.Execution]:
    context = run_context(store, run_id)
    return store.get_executions_by_context(context.id) if context else []


def unfinished_executions(store: Store) -> list[metadata_store_pb2.Execution]:
    """Executions left NEW or RUNNING: their process died or was stopped."""
    return [execution for state in UNFINISHED
            for execution in store.get_executions(list_options=metadata_store.ListOptions(
                filter_query=f"last_known_state = {Execution.State.Name(state)}"))]


def cancel_executions(store: Store, executions, reason: str):
    """Marks executions CANCELED, saying why, so no run shows RUNNING forever."""
    for execution in executions:
        execution.last_known_state = Execution.CANCELED
        execution.custom_properties["canceled_because"].string_value = reason
        execution.custom_properties["canceled_at"].int_value = int(time.time())
    if executions:
        store.put_executions(list(executions))


def runs_of_executions(store: Store, executions) -> set[str]:
    names = set()
    for execution in executions:
        names.update(c.name for c in store.get_contexts_by_execution(execution.id)
                     if store.get_context_types_by_id([c.type_id])[0].name == PIPELINE_RUN)
    return names


def ingested_spans(store: Store, pipeline_name: str) -> set[int]:
    """Spans that CsvExampleGen has already turned into live Examples artifacts."""
    node = store.get_context_by_type_and_name("node", f"{pipeline_name}.CsvExampleGen")
    if node is None:
        return set()
    return {artifacts.span_of(artifact) for artifact in store.get_artifacts_by_context(node.id)
            if artifact.state == metadata_store_pb2.Artifact.LIVE}


def pushed_versions(store: Store) -> set[str]:
    """Versions that a Pusher recorded as pushed (pushed == 1)."""
    return {artifact.custom_properties["pushed_version"].string_value
            for artifact in store.get_artifacts_by_type("PushedModel")
            if artifact.custom_properties["pushed"].int_value == 1}
