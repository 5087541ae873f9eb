"""What one pipeline run did, read back from ML Metadata: the pushed version,
or why nothing was pushed; the spans it trained on; the Evaluator's metrics;
the InfraValidator's verdict and load test.
"""
import dataclasses

from ml_metadata.proto import metadata_store_pb2

from metadata import connection, runs
from metadata.artifacts import confidence_intervals_of, span_of
from pipeline.lineage import artifact_files, confidence


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
    retrain: bool | None = None  # None: no RetrainDecision in the run
    retrain_reason: str = ""
    # The InfraValidator's InfraBlessing custom properties; {}: it did not run.
    infra: dict = dataclasses.field(default_factory=dict)

    @property
    def infra_blessed(self) -> bool | None:
        return bool(self.infra["blessed"]) if "blessed" in self.infra else None

    def infra_validation(self) -> str:
        """e.g. 'InfraValidator: blessed; p99 12.3 ms at 20 req/s (target 100 ms), 0 failed'"""
        if not self.infra:
            return ""
        verdict = "blessed" if self.infra_blessed else "not blessed"
        line = f"InfraValidator: {verdict}"
        if "latency_p99_ms" in self.infra:
            line += (f"; p99 {self.infra['latency_p99_ms']:.1f} ms at "
                     f"{self.infra['load_rate_rps']:g} req/s (target "
                     f"{self.infra['p99_target_ms']:g} ms), "
                     f"{self.infra['failed_requests']} failed")
        if not self.infra_blessed:
            line += f"; {self.infra.get('reason', '')}"
        return line
    # The intervals the Evaluator judged the candidate by (None: not recorded).
    confidence_intervals: dict | None = None

    def evaluation(self) -> str:
        """e.g. 'Evaluator: candidate auc 0.871, binary_accuracy 0.842; baseline ...'"""
        def shown(name, value):
            return f"{name} {value:.0f}" if name == "example_count" else f"{name} {value:.3f}"
        parts = [f"{model} " + ", ".join(shown(name, value)
                                         for name, value in sorted(values.items()))
                 for model, values in sorted(self.metrics.items(), reverse=True)]
        return "Evaluator (overall): " + "; ".join(parts) if parts else ""

    def evaluation_intervals(self) -> list[str]:
        """e.g. 'Evaluator (jackknife): candidate auc 0.919 (95% CI 0.880 to 0.950),
        ...' and a line per change bar with its verdict."""
        intervals = self.confidence_intervals
        if not intervals or not intervals["method"]:
            return []
        method = intervals["method"].lower().replace("_", " ")
        lines = [f"Evaluator ({method}): candidate {confidence.candidate_text(intervals)}"]
        lines += [f"  {confidence.change_text(change, intervals['level'])}"
                  for change in intervals["changes"]]
        return lines

    def status(self) -> tuple[str, str]:
        """(outcome, detail) as recorded on the run's context in ML Metadata."""
        if self.pushed_version and self.pusher_cached:
            return "cached", self.pushed_version
        if self.pushed_version:
            return "pushed", self.pushed_version
        if self.retrain is False:
            return "not retrained", self.retrain_reason
        if self.blessed is False:
            return "not blessed", "; ".join(self.failed_thresholds)
        if self.infra_blessed is False:
            return "not blessed", f"InfraValidator: {self.infra.get('reason', '')}"
        return "ingested", ""

    def outcome(self) -> str:
        if self.retrain is False:
            return (f"Not retrained: {self.retrain_reason}. The span is recorded and "
                    f"joins the next training window.")
        if self.pushed_version and self.pusher_cached:
            return (f"Nothing new to push: the inputs are unchanged, so every step was "
                    f"cached; the serving model is still version {self.pushed_version}.")
        if self.pushed_version:
            return f"Pushed model version {self.pushed_version}."
        if self.blessed is False:
            reasons = "; ".join(self.failed_thresholds) or "see the Evaluator's output"
            return f"Nothing pushed: the Evaluator did not bless the model ({reasons})."
        if self.infra_blessed is False:
            return (f"Nothing pushed: the InfraValidator did not bless the model "
                    f"({self.infra.get('reason') or 'see its blessing'}).")
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


def summarize_run(store, run_id: str) -> RunSummary:
    run = runs.run_context(store, run_id)
    if run is None:
        return RunSummary()
    executions = store.get_executions_by_context(run.id)
    outputs = _outputs_by_type(store, [execution.id for execution in executions])
    summary = RunSummary(run_id=run.name)

    summary.trained_on_spans = _spans_read_by_transform(store, executions)
    for pushed in outputs.get("PushedModel", []):
        if pushed.custom_properties["pushed"].int_value == 1:
            summary.pushed_version = pushed.custom_properties["pushed_version"].string_value
            summary.pusher_cached = _made_before(pushed, run)
    for decision in outputs.get("RetrainDecision", []):
        summary.retrain = decision.custom_properties["retrain"].int_value == 1
        summary.retrain_reason = decision.custom_properties["reason"].string_value
    for blessing in outputs.get("ModelBlessing", []):
        summary.blessed = blessing.custom_properties["blessed"].int_value == 1
        summary.confidence_intervals = confidence_intervals_of(blessing)
    for infra_blessing in outputs.get("InfraBlessing", []):
        summary.infra = _custom_properties(infra_blessing)
    for evaluation in outputs.get("ModelEvaluation", []):
        summary.metrics = _overall_metrics(evaluation.uri)
        if summary.blessed is False:
            summary.failed_thresholds += _failed_thresholds(evaluation.uri)
    return summary


def _custom_properties(artifact) -> dict:
    return {name: getattr(value, value.WhichOneof("value"))
            for name, value in artifact.custom_properties.items() if value.WhichOneof("value")}


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


def print_report(summary: RunSummary, error, seconds: float, cfg, out):
    """The end of run_local's output: what was trained, evaluated and pushed."""
    print(f"Finished in {seconds:.1f}s.", file=out)
    if summary.trained_on_spans and error is None:
        print("Trained on spans " + ", ".join(map(str, summary.trained_on_spans)) + ".",
              file=out)
    if summary.evaluation() and error is None:
        print(summary.evaluation(), file=out)
        for line in summary.evaluation_intervals():
            print(line, file=out)
    if summary.infra_validation() and error is None:
        print(summary.infra_validation(), file=out)
    if error is None:
        print(summary.outcome(), file=out)
    elif isinstance(error, KeyboardInterrupt):
        print(f"The run was stopped ({error}); nothing half-done is left: the next "
              f"run starts this span again.", file=out)
    else:
        print(f"The run failed: {error}", file=out)
    print(f"Serving directory: {cfg.push_base_directory}\n"
          f"Metadata store:    {connection.describe(cfg.metadata_connection)}\n"
          f"Full logs:         {cfg.log_path}", file=out, flush=True)
