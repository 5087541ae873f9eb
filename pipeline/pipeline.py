"""The taxi tips pipeline: every component, wired in data-flow order.

New span -> statistics -> validation against the curated schema (a failed
validation stops the run) -> decay and drift checks against the served model,
and a retrain decision -> if it says retrain: Transform and Trainer on a
rolling window of spans -> Evaluator against the serving model ->
InfraValidator (a local model server on the candidate) -> Pusher, only if both
blessed -> ReleaseCanary: the pushed version becomes the canary beside the stable
one (pipeline/release/ promotes or rolls it back).

`kubeflow_pipeline` is the same DAG less what Kubeflow Pipelines v2 cannot
compile or run (docs/kubeflow.md), for pipeline/run_kubeflow.py.
"""

import tensorflow_model_analysis as tfma
from google.protobuf import json_format
# TFX's own modules, not `from tfx import v1`: tfx.v1 also imports its Google
# Cloud extensions (Vertex AI's client library), 4 s of every run's start-up.
from tfx.components import (Evaluator, ExampleValidator, FileBasedExampleGen, Pusher,
                            SchemaGen, StatisticsGen, Trainer, Transform)
from tfx.dsl.components.base import executor_spec
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.experimental.conditionals.conditional import Cond
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy)
from tfx.orchestration.data_types import RuntimeParameter
from tfx.orchestration.pipeline import Pipeline
from tfx.proto import (example_gen_pb2, infra_validator_pb2, pusher_pb2, range_config_pb2,
                       trainer_pb2)
from tfx.types import Channel, standard_artifacts

from metadata import connection
from models import features, signatures
from pipeline import config as pipeline_config
from pipeline import evaluation_metrics
from pipeline.components.atomic_pusher import AtomicPusherExecutor
from pipeline.components.baseline_model import BlessedBeforeCandidateStrategy
from pipeline.components.csv_ingestion import CsvIngestionExecutor
from pipeline.components.curated_schema import CuratedSchemaGen
from pipeline.components.decay_check import DecayCheck
from pipeline.components.drift_check import DriftCheck
from pipeline.components.infra_validator import InfraValidator
from pipeline.components.release_canary import ReleaseCanary
from pipeline.components.interval_evaluator import IntervalJudgedEvaluatorExecutor
from pipeline.components.retrain_decision import RetrainDecision, policies
from pipeline.components.served_model import ServedModelStrategy
from pipeline.components.training_window import ValidatedSpansStrategy
from pipeline.components.transform_cache import CacheBeforeNewestSpanStrategy
from pipeline.components.validation_gate import ValidationGate


def eval_config(cfg: pipeline_config.PipelineConfig) -> tfma.EvalConfig:
    """Bless a model above an absolute bar that is not worse than the baseline.

    The bars apply to the overall slice; per-feature slices are computed for
    people to read, since a few trips in one hour say little about a model.
    With intervals on, TFMA computes them for every metric and diff, and the
    Evaluator's executor (components/interval_evaluator.py) judges the change
    bar on the interval; the absolute bars stay on the point estimate.
    """
    auc_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": cfg.min_auc}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -cfg.max_auc_drop_vs_baseline}))
    accuracy_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(
            lower_bound={"value": cfg.min_accuracy}))
    options = tfma.Options()
    if cfg.judge_change_on_interval:
        options.compute_confidence_intervals.value = True
        options.confidence_intervals.method = (
            tfma.ConfidenceIntervalOptions.ConfidenceIntervalMethod.Value(
                cfg.confidence_interval_method))
    return tfma.EvalConfig(
        options=options,
        model_specs=[tfma.ModelSpec(
            signature_name=signatures.EVALUATION_SIGNATURE,
            label_key=features.TRANSFORMED_LABEL_KEY,
            preprocessing_function_names=["transform_features"])],
        slicing_specs=[tfma.SlicingSpec()] + [
            tfma.SlicingSpec(feature_keys=[key]) for key in cfg.slice_features],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            evaluation_metrics.auc_config(
                cfg.auc_num_thresholds,
                per_slice_thresholds=[tfma.PerSliceMetricThreshold(
                    slicing_specs=[tfma.SlicingSpec()], threshold=auc_threshold)]),
            tfma.MetricConfig(class_name="BinaryAccuracy", per_slice_thresholds=[
                tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()],
                                             threshold=accuracy_threshold)]),
            tfma.MetricConfig(class_name="Precision"),
            tfma.MetricConfig(class_name="Recall"),
        ])])


def infra_validator(cfg: pipeline_config.PipelineConfig, model, examples):
    """Serves the candidate on a local model server (no Docker), calls every
    client signature with eval rows, load-tests it, and writes the warmed model."""
    return InfraValidator(
        model=model, examples=examples,
        serving_spec=infra_validator_pb2.ServingSpec(
            tensorflow_serving=infra_validator_pb2.TensorFlowServing(),
            model_name=pipeline_config.MODEL_NAME),
        request_spec=infra_validator_pb2.RequestSpec(
            tensorflow_serving=infra_validator_pb2.TensorFlowServingRequestSpec(
                signature_names=list(signatures.CLIENT_SIGNATURES)),
            split_name="eval", num_examples=cfg.infra_request_rows,
            make_warmup=cfg.infra_warmup),
        validation_spec=infra_validator_pb2.ValidationSpec(
            max_loading_time_seconds=cfg.infra_max_loading_seconds, num_tries=1),
        p99_target_ms=cfg.infra_p99_target_ms, load_rate=cfg.infra_load_rate,
        load_seconds=cfg.infra_load_seconds,
        max_failed_requests=cfg.infra_max_failed_requests).with_id("InfraValidator")


def example_gen(cfg: pipeline_config.PipelineConfig, span: int | None, input_base=None):
    """CsvExampleGen over `span-{SPAN}` for one span. The local trigger names the
    span (not "latest on disk"), so a watcher can take new spans oldest first and
    a span that is still being written is never read. With no span (orchestrators
    that compile the DAG once, Kubeflow and Airflow), ExampleGen's driver takes
    the newest span when the run starts. `input_base`: the data folder, if not
    cfg's (Kubeflow's runtime parameter)."""
    range_config = None if span is None else range_config_pb2.RangeConfig(
        static_range=range_config_pb2.StaticRange(start_span_number=span, end_span_number=span))
    # CsvExampleGen takes no custom executor; FileBasedExampleGen, which it extends,
    # does. The id keeps the node name the store, runner and lineage tool know.
    return FileBasedExampleGen(
        input_base=input_base or str(cfg.data_dir),
        input_config=example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(
            name="single_split", pattern=pipeline_config.INPUT_PATTERN)]),
        output_config=example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
            example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=cfg.train_buckets),
            example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=cfg.eval_buckets)])),
        range_config=range_config,
        # Checks every CSV file first, so a malformed one fails with its name and row.
        custom_executor_spec=executor_spec.BeamExecutorSpec(CsvIngestionExecutor),
    ).with_id("CsvExampleGen")


def validated_ingestion(cfg: pipeline_config.PipelineConfig, span: int | None,
                        input_base=None, schema_in_image: str | None = None):
    """ExampleGen, statistics and validation of one span against the curated
    schema; the gate fails the run if the span has anomalies. On Kubeflow the
    executor reads the schema at `schema_in_image`."""
    new_span = example_gen(cfg, span, input_base)
    statistics = StatisticsGen(examples=new_span.outputs["examples"])
    # The node keeps ImportSchemaGen's id; its cache key also covers the content.
    curated_schema = CuratedSchemaGen(schema_file=str(cfg.schema_file),
                                      executor_path=schema_in_image).with_id("ImportSchemaGen")
    validation = ExampleValidator(
        statistics=statistics.outputs["statistics"],
        schema=curated_schema.outputs["schema"])
    gate = ValidationGate(anomalies=validation.outputs["anomalies"],
                          examples=new_span.outputs["examples"])
    return new_span, statistics, curated_schema, validation, gate


def span_checks(cfg: pipeline_config.PipelineConfig, new_span, statistics, curated_schema,
                gate, train_when: str):
    """Measures every validated span against the model served when it arrived
    (decay of its metrics, drift from its training data) and decides by the
    `train_when` policy whether the span trains a new model."""
    # Plain Channels over every run, by the default ids of the Pusher, Evaluator
    # and Transform in create_pipeline.
    served = Resolver(
        strategy_class=ServedModelStrategy,
        examples=new_span.outputs["examples"],
        pushed_model=Channel(type=standard_artifacts.PushedModel,
                             producer_component_id="Pusher",
                             output_key="pushed_model"),
        evaluation=Channel(type=standard_artifacts.ModelEvaluation,
                           producer_component_id="Evaluator", output_key="evaluation"),
        statistics=Channel(type=standard_artifacts.ExampleStatistics,
                           producer_component_id="Transform",
                           output_key="pre_transform_stats"),
    ).with_id("served_model_resolver")
    decay = DecayCheck(
        examples=new_span.outputs["examples"],
        pushed_model=served.outputs["pushed_model"],
        push_evaluation=served.outputs["evaluation"],
        min_auc=cfg.min_auc, min_accuracy=cfg.min_accuracy,
        max_auc_drop=cfg.max_decay_auc_drop)
    drift = DriftCheck(
        examples=new_span.outputs["examples"],
        statistics=statistics.outputs["statistics"],
        schema=curated_schema.outputs["schema"],
        pushed_model=served.outputs["pushed_model"],
        training_statistics=served.outputs["statistics"])
    for check in (decay, drift):
        check.add_upstream_node(gate)  # a span that failed validation is not measured
    # The decision reads only the served model and the checks its policy names.
    # TFX makes it an input of every node under the Cond, so it is part of their
    # cache keys: a change that only re-measures a span (an Evaluator bar) must
    # leave it, and so the trained model, cached.
    chosen = policies(train_when)
    decision = RetrainDecision(
        served_model=served.outputs["pushed_model"],
        performance=decay.outputs["performance"] if "decay" in chosen else None,
        drift=drift.outputs["drift"] if "drift" in chosen else None,
        train_when=train_when)
    decision.add_upstream_node(gate)  # decided only for a span that passed
    return served, decay, drift, decision


def transform_and_train(cfg: pipeline_config.PipelineConfig, examples, curated_schema, gate,
                        analyzer_cache=None, train_args=None):
    """Transform's graph from the training examples, and the model trained on them.
    `train_args`: the Trainer's, if not cfg's steps (Kubeflow's runtime parameter)."""
    code_version = pipeline_config.model_code_version()
    transform = Transform(
        examples=examples,
        schema=curated_schema.outputs["schema"],
        analyzer_cache=analyzer_cache.outputs["cache"] if analyzer_cache else None,
        disable_analyzer_cache=not cfg.analyzer_cache,
        preprocessing_fn=pipeline_config.PREPROCESSING_FN,
        # The Trainer applies the Transform graph as it reads, so the window
        # is not written out again, transformed, for every new span (a tenth
        # of Transform's CPU time, and disk).
        materialize=False,
        custom_config={"code_version": code_version})
    transform.add_upstream_node(gate)  # no Transform, hence no model, from bad data

    trainer = Trainer(
        examples=examples,
        transform_graph=transform.outputs["transform_graph"],
        schema=curated_schema.outputs["schema"],
        run_fn=pipeline_config.RUN_FN,
        train_args=(trainer_pb2.TrainArgs(num_steps=cfg.train_steps)
                    if train_args is None else train_args),
        eval_args=trainer_pb2.EvalArgs(num_steps=cfg.eval_steps),
        custom_config={"hyperparameters": cfg.hyperparameters,
                       "code_version": code_version})
    return transform, trainer


def validate_and_push(cfg: pipeline_config.PipelineConfig, examples, new_span, trainer,
                      baseline, push_destination, pusher_executor=None):
    """Evaluator against the baseline, InfraValidator, and the Pusher, which pushes
    only a model both blessed."""
    evaluator = Evaluator(
        # The eval splits of the whole window, newest span included: a few
        # dozen trips of one quarter would make the bars a coin toss.
        examples=examples,
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"],
        eval_config=eval_config(cfg))
    # Judges the change bar on TFMA's interval (Evaluator's __init__ takes no
    # custom_executor_spec, so it is set as the compiler reads it).
    evaluator.executor_spec = executor_spec.BeamExecutorSpec(IntervalJudgedEvaluatorExecutor)

    # Requests from this run's new span: the newest rows clients will send.
    infra = infra_validator(cfg, trainer.outputs["model"], new_span.outputs["examples"])
    # After the Evaluator: a runner that runs nodes side by side would otherwise
    # load-test the server while the Evaluator takes the CPU. It still runs when
    # the Evaluator says no; the Pusher reads both blessings.
    infra.add_upstream_node(evaluator)

    pusher = Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        # Pushed only if also infra blessed (the atomic pusher pushes its warmed
        # copy, when it has one).
        infra_blessing=infra.outputs["blessing"],
        push_destination=push_destination,
        custom_executor_spec=(executor_spec.ExecutorClassSpec(pusher_executor)
                              if pusher_executor else None))
    return evaluator, infra, pusher


def create_pipeline(cfg: pipeline_config.PipelineConfig, span: int | None,
                    train_when: str = "always", metadata_connection_config=None,
                    beam_pipeline_args=None) -> Pipeline:
    """The whole pipeline for one new span. The metadata connection and Beam
    arguments are parameters, so other runners can share this DAG (by default,
    the configuration's: pipeline/config.py's, then `run_local.py --beam-arg`)."""
    new_span, statistics, curated_schema, validation, gate = validated_ingestion(cfg, span)
    # SchemaGen infers a schema for people to compare; the curated one rules.
    inferred_schema = SchemaGen(
        statistics=statistics.outputs["statistics"], infer_feature_shape=True)

    served, decay, drift, decision = span_checks(cfg, new_span, statistics, curated_schema,
                                                 gate, train_when)

    # Nodes inside are skipped (and the run succeeds) when the policy says no.
    # TFX makes the decision an input of each of them, hence part of their cache
    # key: a rerun with nothing new keeps it, as it resolves the same served model.
    with Cond(decision.outputs["decision"].future()[0]
              .custom_property("retrain") == 1):
        # A component's output channel gives only this run's artifacts; a plain
        # Channel into a Resolver queries every run of the pipeline in ML Metadata.
        window = Resolver(
            strategy_class=ValidatedSpansStrategy,
            config={"num_spans": cfg.training_window_spans},
            examples=Channel(type=standard_artifacts.Examples,
                             producer_component_id=new_span.id, output_key="examples"),
        ).with_id("training_window_resolver")
        window.add_upstream_node(gate)  # this run's span counts once it passed
        analyzer_cache = Resolver(
            strategy_class=CacheBeforeNewestSpanStrategy,
            examples=new_span.outputs["examples"],
            cache=Channel(type=standard_artifacts.TransformCache),
        ).with_id("transform_cache_resolver") if cfg.analyzer_cache else None
        transform, trainer = transform_and_train(cfg, window.outputs["examples"],
                                                 curated_schema, gate, analyzer_cache)
        baseline = Resolver(
            strategy_class=BlessedBeforeCandidateStrategy,
            model=Channel(type=standard_artifacts.Model,
                          producer_component_id=trainer.id, output_key="model"),
            model_blessing=Channel(type=standard_artifacts.ModelBlessing),
        ).with_id("baseline_model_resolver")
        baseline.add_upstream_node(trainer)  # the candidate must exist to be excluded
        evaluator, infra, pusher = validate_and_push(
            cfg, window.outputs["examples"], new_span, trainer, baseline,
            pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(
                base_directory=cfg.push_base_directory)),
            pusher_executor=AtomicPusherExecutor)
        # Clients get the stable version; the pushed one becomes the canary beside it.
        release_canary = ReleaseCanary(
            pushed_model=pusher.outputs["pushed_model"], output_dir=str(cfg.output_dir),
            metadata_connection=connection.to_text(
                metadata_connection_config or cfg.metadata_connection),
            serving_metrics_url=cfg.serving_metrics_url or "",
            load_timeout_seconds=cfg.canary_load_timeout_seconds)

    return Pipeline(
        pipeline_name=pipeline_config.PIPELINE_NAME,
        pipeline_root=str(cfg.pipeline_root),
        metadata_connection_config=metadata_connection_config or cfg.metadata_connection,
        components=[new_span, statistics, inferred_schema, curated_schema, validation,
                    gate, served, decay, drift, decision, window,
                    *([analyzer_cache] if analyzer_cache else []), transform,
                    trainer, baseline, evaluator, infra, pusher, release_canary],
        enable_cache=cfg.enable_cache,
        beam_pipeline_args=list(beam_pipeline_args or cfg.beam_pipeline_args))


def proto_parameter(name: str, default) -> RuntimeParameter:
    """A runtime parameter for a proto argument. One cannot sit inside a proto's
    field, so the whole proto is the parameter, in JSON; TFX's executors parse it."""
    return RuntimeParameter(name=name, ptype=str,
                            default=json_format.MessageToJson(default, indent=None))


def kubeflow_pipeline(cfg: pipeline_config.PipelineConfig, pipeline_root: str,
                      data_root: str, serving_model_dir: str) -> Pipeline:
    """The pipeline as Kubeflow Pipelines v2 (Vertex AI) can run it: the newest
    span, validated, trains a model that must pass the same Evaluator and
    InfraValidator before the Pusher pushes it. `data_root`, the Trainer's
    `train_args` and the Pusher's `push_destination` are runtime parameters with
    these (and cfg's) defaults. Left out, because
    KFP's V2 compiler or a cluster cannot take them (docs/kubeflow.md): the span
    checks, retrain decision and Cond, the window of several spans, the analyzer
    cache, ReleaseCanary."""
    if cfg.analyzer_cache:
        raise ValueError("The analyzer cache needs a custom resolver that Kubeflow's V2 "
                         "compiler cannot compile: set analyzer_cache=False.")
    new_span, statistics, curated_schema, validation, gate = validated_ingestion(
        cfg, span=None,  # ExampleGen's driver takes the newest span
        input_base=RuntimeParameter(name="data_root", ptype=str, default=data_root),
        schema_in_image=pipeline_config.in_image(cfg.schema_file))
    inferred_schema = SchemaGen(
        statistics=statistics.outputs["statistics"], infer_feature_shape=True)

    examples = new_span.outputs["examples"]  # a window of one span
    transform, trainer = transform_and_train(
        cfg, examples, curated_schema, gate,
        train_args=proto_parameter("train_args", trainer_pb2.TrainArgs(
            num_steps=cfg.train_steps)))
    # The latest blessed model: the candidate has no blessing yet when it resolves.
    baseline = Resolver(
        strategy_class=LatestBlessedModelStrategy,
        model=Channel(type=standard_artifacts.Model),
        model_blessing=Channel(type=standard_artifacts.ModelBlessing),
    ).with_id("baseline_model_resolver")
    # The same Pusher as locally: on gs:// it writes saved_model.pb last, so a
    # polling server never loads half a model (docs/remote-push.md).
    push_destination = proto_parameter("push_destination", pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=serving_model_dir)))
    evaluator, infra, pusher = validate_and_push(cfg, examples, new_span, trainer, baseline,
                                                 push_destination,
                                                 pusher_executor=AtomicPusherExecutor)
    return Pipeline(
        pipeline_name=pipeline_config.KUBEFLOW_PIPELINE_NAME,
        pipeline_root=pipeline_root,
        components=[new_span, statistics, inferred_schema, curated_schema, validation, gate,
                    transform, trainer, baseline, evaluator, infra, pusher],
        enable_cache=cfg.enable_cache,
        beam_pipeline_args=pipeline_config.IMAGE_BEAM_PIPELINE_ARGS)


def ingestion_pipeline(cfg: pipeline_config.PipelineConfig, span: int,
                       metadata_connection_config=None, beam_pipeline_args=None
                       ) -> Pipeline:
    """Ingests and validates one older span: fills the training window on a new
    store. Same pipeline name and node ids, so its Examples join the same channel,
    and a bad old span stops the run just as a bad new one does."""
    return Pipeline(
        pipeline_name=pipeline_config.PIPELINE_NAME,
        pipeline_root=str(cfg.pipeline_root),
        metadata_connection_config=metadata_connection_config or cfg.metadata_connection,
        components=list(validated_ingestion(cfg, span)),
        enable_cache=cfg.enable_cache,
        beam_pipeline_args=list(beam_pipeline_args or cfg.beam_pipeline_args))
