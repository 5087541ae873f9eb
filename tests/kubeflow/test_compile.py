"""`python pipeline/run_kubeflow.py --image IMAGE -o pipeline.json` compiles the
pipeline for Kubeflow Pipelines v2 / Vertex AI: every component a task in IMAGE,
the baseline resolver as KFP queries, runtime parameters with their defaults,
and no path of this machine in the spec. docs/kubeflow.md lists what is left out."""
import importlib
import json

import pytest
from google.protobuf import json_format

from pipeline import config as pipeline_config
from tfx.proto import pusher_pb2, trainer_pb2
from tests.kubeflow.conftest import FLAGS, IMAGE, PROJECT_ROOT, executors_of, run_kubeflow, spec_of

EXECUTOR_COMMAND = ["python", "-m",
                    "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]
# Each container task and the executor class it runs in the image.
EXECUTORS = {
    "CsvExampleGen": "pipeline.components.csv_ingestion.CsvIngestionExecutor",
    "StatisticsGen": "tfx.components.statistics_gen.executor.Executor",
    "SchemaGen": "tfx.components.schema_gen.executor.Executor",
    "ImportSchemaGen": "tfx.components.schema_gen.import_schema_gen.executor.Executor",
    "ExampleValidator": "tfx.components.example_validator.executor.Executor",
    "ValidationGate": "pipeline.components.validation_gate.ValidationGate_Executor",
    "Transform": "tfx.components.transform.executor.Executor",
    "Trainer": "tfx.components.trainer.executor.GenericExecutor",
    "Evaluator": "pipeline.components.interval_evaluator.IntervalJudgedEvaluatorExecutor",
    "InfraValidator": "pipeline.components.infra_validator.SubprocessInfraValidatorExecutor",
    # The local Pusher: through tf.io.gfile on gs://, saved_model.pb last.
    "Pusher": "pipeline.components.atomic_pusher.AtomicPusherExecutor",
}
BEAM_COMPONENTS = ("CsvExampleGen", "StatisticsGen", "Transform", "Evaluator")
# LatestBlessedModelStrategy compiles to two KFP resolver tasks.
BLESSING_RESOLVER = "baseline_model_resolver-model-blessing-resolver"
MODEL_RESOLVER = "baseline_model_resolver-model-resolver"
# Nodes of the local DAG that Kubeflow's V2 compiler or a cluster cannot take
# (docs/kubeflow.md); the training window is the new span itself.
LEFT_OUT = {"served_model_resolver", "DecayCheck", "DriftCheck", "RetrainDecision",
            "training_window_resolver", "ReleaseCanary"}


@pytest.fixture(scope="module")
def job(compiled_job):
    return compiled_job[0]


@pytest.fixture(scope="module")
def spec(job):
    return spec_of(job)


@pytest.fixture(scope="module")
def tasks(spec):
    return dict(spec.root.dag.tasks)


def container_of(spec, task_name):
    return executors_of(spec)[spec.components[task_name].executor_label].container


def test_every_component_of_the_local_dag_is_a_task_but_the_documented_ones(tasks):
    from pipeline.pipeline import create_pipeline
    local = {node.id for node in create_pipeline(pipeline_config.PipelineConfig(), None).components}
    assert set(tasks) == (local - LEFT_OUT - {"baseline_model_resolver"}
                          | {BLESSING_RESOLVER, MODEL_RESOLVER})
    assert set(EXECUTORS) | {BLESSING_RESOLVER, MODEL_RESOLVER} == set(tasks)


@pytest.mark.parametrize("task_name", sorted(EXECUTORS))
def test_each_component_runs_its_executor_in_the_image(spec, task_name):
    container = container_of(spec, task_name)
    assert container.image == IMAGE
    assert list(container.command) == EXECUTOR_COMMAND
    args = list(container.args)
    executor = args[args.index("--executor_class_path") + 1]
    assert executor == EXECUTORS[task_name]
    module, name = executor.rsplit(".", 1)
    assert hasattr(importlib.import_module(module), name)  # the image imports the same code


@pytest.mark.parametrize("task_name", BEAM_COMPONENTS)
def test_beam_components_get_the_image_beam_args(spec, task_name):
    args = list(container_of(spec, task_name).args)
    assert args[-len(pipeline_config.IMAGE_BEAM_PIPELINE_ARGS):] == \
        pipeline_config.IMAGE_BEAM_PIPELINE_ARGS
    assert f"--setup_file={pipeline_config.IMAGE_PROJECT_ROOT}/setup.py" in args


def test_example_gen_takes_the_newest_span_in_its_driver(spec, tasks):
    driver = container_of(spec, "CsvExampleGen").lifecycle.pre_cache_check
    assert list(driver.command)[-1] == "tfx.orchestration.kubeflow.v2.file_based_example_gen.driver"
    parameters = tasks["CsvExampleGen"].inputs.parameters
    assert "range_config" not in parameters  # no span named: the driver takes the newest
    pattern = json.loads(parameters["input_config"].runtime_value.constant.string_value)
    assert pattern["splits"][0]["pattern"] == pipeline_config.INPUT_PATTERN


def test_baseline_is_the_latest_blessed_model(spec, tasks):
    executors = executors_of(spec)
    blessing_query = executors[spec.components[BLESSING_RESOLVER].executor_label] \
        .resolver.output_artifact_queries["model_blessing"].filter
    assert 'schema_title="tfx.ModelBlessing"' in blessing_query
    assert "metadata.blessed.number_value=1" in blessing_query
    model_query = executors[spec.components[MODEL_RESOLVER].executor_label] \
        .resolver.output_artifact_queries["model"].filter
    assert 'schema_title="tfx.Model"' in model_query and "current_model_id" in model_query
    assert tasks[MODEL_RESOLVER].inputs.artifacts["input"].task_output_artifact \
        .producer_task == BLESSING_RESOLVER
    baseline = tasks["Evaluator"].inputs.artifacts["baseline_model"].task_output_artifact
    assert (baseline.producer_task, baseline.output_artifact_key) == (MODEL_RESOLVER, "model")


def test_data_flows_through_the_gate_and_both_blessings(tasks):
    assert "ValidationGate" in tasks["Transform"].dependent_tasks
    assert "Evaluator" in tasks["InfraValidator"].dependent_tasks
    pusher = tasks["Pusher"].inputs.artifacts
    assert pusher["model_blessing"].task_output_artifact.producer_task == "Evaluator"
    assert pusher["infra_blessing"].task_output_artifact.producer_task == "InfraValidator"
    for name in ("Transform", "Trainer", "Evaluator"):  # a window of one span: the new one
        assert tasks[name].inputs.artifacts["examples"].task_output_artifact \
            .producer_task == "CsvExampleGen"
    # No Cond: the retrain decision is left out, every valid span trains.
    assert not any(task.trigger_policy.condition for task in tasks.values())


def test_model_code_is_referenced_by_import_path(tasks):
    transform = tasks["Transform"].inputs.parameters
    trainer = tasks["Trainer"].inputs.parameters
    assert transform["preprocessing_fn"].runtime_value.constant.string_value == \
        pipeline_config.PREPROCESSING_FN
    assert trainer["run_fn"].runtime_value.constant.string_value == pipeline_config.RUN_FN
    assert "module_file" not in transform and "module_file" not in trainer
    assert "module_path" not in transform and "module_path" not in trainer


def test_runtime_parameters_have_the_flags_as_defaults(job, spec, tasks):
    """Data root, serving destination and Trainer steps, overridable at submission."""
    inputs = spec.root.input_definitions.parameters
    assert set(inputs) == {"data_root", "push_destination", "train_args"}
    defaults = {name: parameter.default_value.string_value for name, parameter in inputs.items()}
    assert {name: value.string_value for name, value in
            job.runtime_config.parameter_values.items()} == defaults
    assert defaults["data_root"] == FLAGS["--data-root"]
    destination = json_format.Parse(defaults["push_destination"], pusher_pb2.PushDestination())
    assert destination.filesystem.base_directory == FLAGS["--serving-dir"]
    train_args = json_format.Parse(defaults["train_args"], trainer_pb2.TrainArgs())
    assert train_args.num_steps == int(FLAGS["--train-steps"])
    assert tasks["Trainer"].inputs.parameters["train_args"] \
        .component_input_parameter == "train_args"
    assert tasks["CsvExampleGen"].inputs.parameters["input_base"] \
        .component_input_parameter == "data_root"
    assert tasks["Pusher"].inputs.parameters["push_destination"] \
        .component_input_parameter == "push_destination"
    assert job.runtime_config.gcs_output_directory == FLAGS["--pipeline-root"]


def test_no_path_of_this_machine_is_in_the_spec(compiled_job, tasks):
    _, text = compiled_job
    assert str(PROJECT_ROOT) not in text
    schema = tasks["ImportSchemaGen"].inputs.parameters["schema_file"] \
        .runtime_value.constant.string_value
    relative = schema.removeprefix(pipeline_config.IMAGE_PROJECT_ROOT + "/")
    assert relative != schema and (PROJECT_ROOT / relative).is_file()


def test_defaults_come_from_the_configuration(default_spec):
    cfg = pipeline_config.PipelineConfig()
    inputs = default_spec.root.input_definitions.parameters
    assert inputs["data_root"].default_value.string_value == str(cfg.data_dir)
    destination = json_format.Parse(inputs["push_destination"].default_value.string_value,
                                    pusher_pb2.PushDestination())
    assert destination.filesystem.base_directory == str(cfg.serving_model_dir)
    train_args = json_format.Parse(inputs["train_args"].default_value.string_value,
                                   trainer_pb2.TrainArgs())
    assert train_args.num_steps == cfg.train_steps
    assert default_spec.pipeline_info.name == pipeline_config.KUBEFLOW_PIPELINE_NAME


@pytest.mark.parametrize("args", [
    [],                                               # --image is required
    ["--image", "Not An Image"],
    ["--image", IMAGE, "-o", "pipeline.txt"],
    ["--image", IMAGE, "-o", "tests"],                # a folder
    ["--image", IMAGE, "--train-steps", "0"],
    ["--image", IMAGE, "--data-root", " "],
], ids=["no-image", "bad-image", "bad-suffix", "folder", "zero-steps", "empty-data-root"])
def test_bad_usage_exits_2_and_writes_nothing(tmp_path, args):
    result = run_kubeflow(*args)
    assert result.returncode == 2, result.stderr
    assert not (PROJECT_ROOT / "pipeline.txt").exists()


def test_vertex_ai_client_builds_a_run_from_the_job(compiled_job, tmp_path):
    """google-cloud-aiplatform reads the JSON as `submit()` would send it; nothing
    is sent (no credentials, no submit)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform
    _, text = compiled_job
    (tmp_path / "pipeline.json").write_text(text)

    def vertex_job(**parameter_values):
        return aiplatform.PipelineJob(
            display_name="taxi-tips", template_path=str(tmp_path / "pipeline.json"),
            project="taxi-project", location="us-central1",
            credentials=AnonymousCredentials(), parameter_values=parameter_values)

    run = vertex_job(data_root="gs://other-bucket/spans")._gca_resource
    assert run.runtime_config.gcs_output_directory == FLAGS["--pipeline-root"]
    assert dict(run.runtime_config.parameter_values)["data_root"] == "gs://other-bucket/spans"
    assert set(run.pipeline_spec["root"]["dag"]["tasks"]) == set(EXECUTORS) | {
        BLESSING_RESOLVER, MODEL_RESOLVER}
    with pytest.raises(ValueError):
        vertex_job(serving_dir="gs://a/b")  # not a parameter of the pipeline
