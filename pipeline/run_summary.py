"""What the last pipeline run did, read back from ML Metadata for run_local.py.

Answers two questions: which spans are already ingested (to fill the training
window on a new store) and what came of the latest run (pushed version, or why
nothing was pushed).
"""
import dataclasses
import pathlib

from ml_metadata.proto import metadata_store_pb2

from pipeline import config as pipeline_config
from pipeline.lineage import artifact_files
from pipeline.lineage.store import open_store  # read-only, as the lineage tool reads


def ingested_spans(metadata_path: pathlib.Path) -> set[int]:
    """Spans that CsvExampleGen has already turned into Examples artifacts."""
    if not metadata_path.exists():
        return set()
    store = open_store(str(metadata_path))
    node = store.get_context_by_type_and_name(
        "node", f"{pipeline_config.PIPELINE_NAME}.CsvExampleGen")
    if node is None:
        return set()
    return {span_of(artifact) for artifact in store.get_artifacts_by_context(node.id)
            if artifact.state == metadata_store_pb2.Artifact.LIVE}


def span_of(artifact: metadata_store_pb2.Artifact) -> int | None:
    """TFX 1.16 keeps `span` as a custom property; older TFX as a property."""
    for properties in (artifact.properties, artifact.custom_properties):
        if "span" in properties:
            return properties["span"].int_value
    return None


@dataclasses.dataclass
class RunSummary:
    run_id: str = ""
    pushed_version: str | None = None  # pushed by this run's Pusher
    pusher_cached: bool = False
    blessed: bool | None = None  # None: the Evaluator did not run
    failed_thresholds: list[str] = dataclasses.field(default_factory=list)
    # Overall-slice metrics by model ("candidate", "baseline") and metric name.
    metrics: dict = dataclasses.field(default_factory=dict)
    trained_on_spans: list[int] = dataclasses.field(default_factory=list)

    def evaluation(self) -> str:
        """e.g. 'Evaluator: candidate auc 0.871, binary_accuracy 0.842; baseline ...'"""
        def shown(name, value):
            return f"{name} {value:.0f}" if name == "example_count" else f"{name} {value:.3f}"
        parts = [f"{model} " + ", ".join(shown(name, value)
                                         for name, value in sorted(values.items()))
                 for model, values in sorted(self.metrics.items(), reverse=True)]
        return "Evaluator (overall): " + "; ".join(parts) if parts else ""

    def outcome(self) -> str:
        if self.pushed_version and self.pusher_cached:
            return (f"Nothing new to push: the inputs are unchanged, so every step was "
                    f"cached; the serving model is still version {self.pushed_version}.")
        if self.pushed_version:
            return f"Pushed model version {self.pushed_version}."
        if self.blessed is False:
            reasons = "; ".join(self.failed_thresholds) or "see the Evaluator's output"
            return f"Nothing pushed: the Evaluator did not bless the model ({reasons})."
        return "Nothing pushed: the run did not reach the Pusher."


def _outputs_by_type(store, execution_ids) -> dict[str, list]:
    events = store.get_events_by_execution_ids(execution_ids)
    output_ids = [e.artifact_id for e in events
                  if e.type == metadata_store_pb2.Event.OUTPUT]
    types = {t.id: t.name for t in store.get_artifact_types()}
    by_type: dict[str, list] = {}
    for artifact in store.get_artifacts_by_id(output_ids):
        by_type.setdefault(types[artifact.type_id], []).append(artifact)
    return by_type


def _failed_thresholds(evaluation_uri: str) -> list[str]:
    import tensorflow_model_analysis as tfma

    result = tfma.load_validation_result(evaluation_uri)
    failures = []
    for per_slice in result.metric_validations_per_slice:
        slice_name = tfma.slicer.stringify_slice_key(
            tfma.slicer.deserialize_slice_key(per_slice.slice_key)) or "Overall"
        for failure in per_slice.failures:
            failures.append(f"{failure.metric_key.name} {failure.metric_value.double_value.value:.3f} "
                            f"on {slice_name}: {failure.message or 'threshold not met'}")
    return failures


def summarize_latest_run(metadata_path: pathlib.Path) -> RunSummary:
    if not metadata_path.exists():
        return RunSummary()
    store = open_store(str(metadata_path))
    runs = store.get_contexts_by_type("pipeline_run")
    if not runs:
        return RunSummary()
    run = max(runs, key=lambda context: (context.create_time_since_epoch, context.id))
    executions = store.get_executions_by_context(run.id)
    outputs = _outputs_by_type(store, [execution.id for execution in executions])
    summary = RunSummary(run_id=run.name)

    summary.trained_on_spans = _spans_read_by_transform(store, executions)
    for pushed in outputs.get("PushedModel", []):
        if pushed.custom_properties["pushed"].int_value == 1:
            summary.pushed_version = pushed.custom_properties["pushed_version"].string_value
            summary.pusher_cached = _made_before(pushed, run)
    for blessing in outputs.get("ModelBlessing", []):
        summary.blessed = blessing.custom_properties["blessed"].int_value == 1
    for evaluation in outputs.get("ModelEvaluation", []):
        summary.metrics = _overall_metrics(evaluation.uri)
        if summary.blessed is False:
            summary.failed_thresholds += _failed_thresholds(evaluation.uri)
    return summary


REPORTED_METRICS = ("auc", "binary_accuracy", "example_count")


def _overall_metrics(evaluation_uri: str) -> dict:
    return {model: {name: value for name, value in values.items() if name in REPORTED_METRICS}
            for model, values in artifact_files.overall_metrics(evaluation_uri).items()}


def _spans_read_by_transform(store, executions) -> list[int]:
    """The training window: spans of the Examples this run's Transform read."""
    types = {t.id: t.name for t in store.get_execution_types()}
    transform_ids = [e.id for e in executions if types[e.type_id].endswith(".Transform")]
    if not transform_ids:
        return []
    events = store.get_events_by_execution_ids(transform_ids)
    inputs = [e.artifact_id for e in events if e.type == metadata_store_pb2.Event.INPUT
              and e.path.steps and e.path.steps[0].key == "examples"]
    return sorted(span for span in map(span_of, store.get_artifacts_by_id(inputs))
                  if span is not None)


def _made_before(artifact, run_context) -> bool:
    """A cached Pusher re-reports an artifact made by an earlier run."""
    return artifact.create_time_since_epoch < run_context.create_time_since_epoch
