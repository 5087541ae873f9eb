"""A pushed model traces back through every step to the exact data spans."""
import glob

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2


class RawLineage:
    """Ground truth straight from ML Metadata's events, without the tool."""

    def __init__(self, metadata_path):
        config = metadata_store_pb2.ConnectionConfig()
        config.sqlite.filename_uri = str(metadata_path)
        config.sqlite.connection_mode = (
            metadata_store_pb2.SqliteMetadataSourceConfig.READONLY)
        self.mlmd = metadata_store.MetadataStore(config)

    def producer(self, artifact_id):
        return next(e.execution_id for e in self.mlmd.get_events_by_artifact_ids([artifact_id])
                    if e.type == metadata_store_pb2.Event.OUTPUT)

    def inputs(self, execution_id, key):
        return [e.artifact_id for e in self.mlmd.get_events_by_execution_ids([execution_id])
                if e.type == metadata_store_pb2.Event.INPUT
                and key in [step.key for step in e.path.steps]]

    def pusher(self, pushed_version: str):
        (pushed,) = [a for a in self.mlmd.get_artifacts_by_type("PushedModel")
                     if a.custom_properties["pushed_version"].string_value == pushed_version]
        return self.producer(pushed.id)

    def spans_trained_on(self, pushed_version: str) -> set[int]:
        """PushedModel <- Pusher <- Model <- Trainer <- examples (the window's spans; the
        Trainer applies the transform graph itself)."""
        (model,) = self.inputs(self.pusher(pushed_version), "model")
        examples = self.inputs(self.producer(model), "examples")
        return {a.custom_properties["span"].int_value
                for a in self.mlmd.get_artifacts_by_id(examples)}

    def baseline_of(self, pushed_version: str):
        """The model the Evaluator that blessed this push compared against."""
        (blessing,) = self.inputs(self.pusher(pushed_version), "model_blessing")
        baselines = self.inputs(self.producer(blessing), "baseline_model")
        return baselines[0] if baselines else None


def test_served_model_is_latest_push_and_traces_to_its_spans(store, lineage_json):
    trace = lineage_json("model")["model_trace"]
    served = str(store.pushed_versions()[-1])
    assert trace["version"] == served
    assert trace["destination"] == str(store.serving_dir / served)

    spans = [s["span"] for s in trace["spans"]]
    assert set(spans) == RawLineage(store.metadata_path).spans_trained_on(served)
    assert 16 in spans, "the run after span 16 arrived must have trained on it"
    for span in trace["spans"]:
        on_disk = sorted(glob.glob(str(store.data_dir / f"span-{span['span']}" / "*.csv")))
        assert [f["path"] for f in span["files"]] == on_disk
        assert span["fingerprint"].startswith("split:")
        assert span["fingerprint_now"] == span["fingerprint"], "data unchanged since"


def test_older_version_traces_to_older_data(store, lineage_json):
    versions = store.pushed_versions()
    assert len(versions) >= 2
    trace = lineage_json("model", "--version", versions[0])["model_trace"]
    spans = {s["span"] for s in trace["spans"]}
    assert spans == RawLineage(store.metadata_path).spans_trained_on(str(versions[0]))
    assert 16 not in spans, "pushed before span 16 existed"


def test_trace_names_evaluation_training_and_every_step(store, lineage_json):
    trace = lineage_json("model")["model_trace"]
    evaluation, training = trace["evaluation"], trace["training"]
    assert evaluation["blessed"] is True
    assert {"auc", "binary_accuracy"} <= set(evaluation["metrics"])
    assert {t["metric"] for t in evaluation["thresholds"]} >= {"PipelineAUC", "BinaryAccuracy"}
    served = str(store.pushed_versions()[-1])
    assert evaluation["baseline_model"] == RawLineage(store.metadata_path).baseline_of(served)
    assert training["train_steps"] > 0
    assert training["hyperparameters"], "Trainer custom_config holds them"
    assert training["code_version"]
    transform = trace["transform"]
    assert transform["code"] and transform["code_version"]
    assert str(transform["transform_graph"]) in trace["graph"]["artifacts"]
    nodes = {e["node"] for e in trace["graph"]["executions"].values()}
    assert {"Pusher", "Evaluator", "Trainer", "Transform", "CsvExampleGen",
            "ImportSchemaGen", "StatisticsGen", "ExampleValidator", "SchemaGen"} <= nodes
    anomalies = trace["anomalies"]
    assert anomalies and all(not any(a["anomalies"].values()) for a in anomalies), (
        "a pushed model's data passed validation")
    for execution in trace["graph"]["executions"].values():
        assert execution["started"] > 0 and execution["duration_s"] >= 0
        assert execution["run"], "each step names its pipeline run"


def test_text_tree_reads_from_push_to_data(lineage):
    text = lineage("model")
    for expected in ("Pushed model version", "Evaluation", "BLESSED", "threshold",
                     "Training", "hyperparam", "Transform", "Data", "span 16", "fingerprint",
                     "Schema and data checks", "Lineage"):
        assert expected in text
    tree = text.split("Lineage (each artifact <- the step that made it)\n", 1)[1]
    first = tree.splitlines()[0]
    assert first.startswith("PushedModel #") and "<- Pusher #" in first
    assert "model: Model #" in tree and "<- Trainer #" in tree
    assert "<- Transform #" in tree and "<- CsvExampleGen #" in tree


def test_cached_run_steps_point_at_the_execution_they_reused(training_runs, lineage_json):
    cached_run = training_runs[1]
    assert cached_run["cached"] >= 5
    graph = lineage_json("graph", "--run", cached_run["id"])["lineage_graph"]
    cached = [e for e in graph["executions"].values() if e["state"] == "CACHED"]
    assert {e["node"] for e in cached} >= {"Transform", "Trainer"}
    first_run_name = training_runs[0]["name"]
    for execution in cached:
        assert execution["cache_source"] is not None, execution["node"]
    sources = lineage_json("graph", "--run", training_runs[0]["id"])["lineage_graph"]
    trainer_sources = {e["cache_source"] for e in cached if e["node"] == "Trainer"}
    assert trainer_sources <= {int(i) for i in sources["executions"]}, (
        f"the cached Trainer reused the one of run {first_run_name}")
