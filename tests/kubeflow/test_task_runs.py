"""A compiled task runs as KFP would start it in the image: the CsvExampleGen
task's driver hook, then its executor, each the exact command and arguments of the
compiled job, with the executor input KFP puts in place of `{{$}}` (the test plays
KFP's launcher: runtime parameters from the submission, output URIs under a
folder, `python` the environment's). The driver must pick the newest span
under `data_root`, and the executor must read that span."""
import json
import pathlib
import subprocess
import sys

import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from tests.conftest import make_spans
from tests.kubeflow.conftest import PROJECT_ROOT, executors_of, spec_of

TASK = "CsvExampleGen"


def executor_input(spec, job, task_name, data_root, folder) -> str:
    """ExecutorInput JSON for one task: its constant parameters, the runtime
    parameters as submitted, and one output artifact per output under `folder`."""
    task, component = spec.root.dag.tasks[task_name], spec.components[task_name]
    submitted = {**{name: json_format.MessageToDict(value)
                    for name, value in job.runtime_config.parameter_values.items()},
                 "data_root": str(data_root)}
    parameters = {}
    for name, source in task.inputs.parameters.items():
        if source.component_input_parameter:
            parameters[name] = submitted[source.component_input_parameter]
        else:
            parameters[name] = json_format.MessageToDict(source.runtime_value.constant)
    outputs = {name: {"artifacts": [{
        "name": f"{task_name}-{name}", "uri": str(folder / name), "metadata": {},
        "type": {"instanceSchema": definition.artifact_type.instance_schema}}]}
        for name, definition in component.output_definitions.artifacts.items()}
    return json.dumps({"inputs": {"parameterValues": parameters},
                       "outputs": {"artifacts": outputs,
                                   "outputFile": str(folder / "executor_output.json")}})


def run_in_place_of_kfp(command, args, invocation) -> subprocess.CompletedProcess:
    argv = [*command, *[invocation if arg == "{{$}}" else arg for arg in args]]
    assert argv[0] == "python"  # the image's, which has TFX: here, this environment's
    return subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=300)


@pytest.fixture(scope="module")
def example_gen_run(compiled_job, tmp_path_factory):
    """Span 14 of 30 trips, span 15 of 60; the driver's output as it left it
    (the executor then writes its own to the same file), and the executor's run."""
    job, _ = compiled_job
    spec = spec_of(job)
    data_root = tmp_path_factory.mktemp("spans")
    make_spans(data_root, 14, 14, rows=30)
    make_spans(data_root, 15, 15, rows=60)
    folder = tmp_path_factory.mktemp("task") / TASK
    invocation = executor_input(spec, job, TASK, data_root, folder)
    container = executors_of(spec)[spec.components[TASK].executor_label].container
    driver_hook = container.lifecycle.pre_cache_check
    driver = run_in_place_of_kfp(driver_hook.command, driver_hook.args, invocation)
    assert driver.returncode == 0, driver.stderr[-3000:]
    driver_output = json_format.Parse(
        (folder / "executor_output.json").read_text(), pipeline_spec_pb2.ExecutorOutput(),
        ignore_unknown_fields=True)
    executor = run_in_place_of_kfp(container.command, container.args, invocation)
    return folder, driver_output, executor


def test_driver_picks_the_newest_span(example_gen_run):
    _, driver_output, _ = example_gen_run
    assert driver_output.parameter_values["span"].number_value == 15
    input_config = json.loads(driver_output.parameter_values["input_config"].string_value)
    assert input_config["splits"][0]["pattern"] == "span-15/*.csv"


def test_executor_writes_the_span_as_examples(example_gen_run):
    folder, _, executor = example_gen_run
    assert executor.returncode == 0, executor.stderr[-3000:]
    import tensorflow as tf
    files = sorted(str(path) for path in (folder / "examples").glob("Split-*/*.gz"))
    assert {pathlib.Path(path).parent.name for path in files} == {"Split-train", "Split-eval"}
    records = sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))
    assert records == 60  # span 15's trips, not span 14's
