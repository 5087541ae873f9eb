"""The Kubeflow pipeline compiled as a user compiles it: `run_kubeflow.py` in a
subprocess, its PipelineJob read back with KFP's own protos. Compiled twice per
session: once with every flag (JSON), once with the defaults (YAML)."""
import json
import pathlib
import subprocess
import sys

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
IMAGE = "us-docker.pkg.dev/taxi-project/pipelines/taxi-tips:1"
FLAGS = {"--pipeline-root": "gs://taxi-bucket/pipeline_root",
         "--data-root": "gs://taxi-bucket/spans",
         "--serving-dir": "gs://taxi-bucket/serving_model/taxi_tips",
         "--train-steps": "300"}


def run_kubeflow(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PROJECT_ROOT / "pipeline" / "run_kubeflow.py"),
                           *args], capture_output=True, text=True, cwd=PROJECT_ROOT,
                          timeout=300)


@pytest.fixture(scope="session")
def compilations(tmp_path_factory):
    """Both compilations side by side (each is mostly TFX's import): every flag to
    JSON, and only --image to YAML (the pipeline spec, as the KFP UI takes it)."""
    folder = tmp_path_factory.mktemp("kubeflow")
    json_file, yaml_file = folder / "pipeline.json", folder / "pipeline.yaml"
    flags = [item for pair in FLAGS.items() for item in pair]
    runs = [subprocess.Popen([sys.executable, str(PROJECT_ROOT / "pipeline" / "run_kubeflow.py"),
                              "--image", IMAGE, "-o", str(output), *extra],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=PROJECT_ROOT)
            for output, extra in ((json_file, flags), (yaml_file, []))]
    for run in runs:
        _, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr[-3000:]
    return json_file, yaml_file


@pytest.fixture(scope="session")
def compiled_job(compilations):
    """(PipelineJob, its JSON text) compiled with every flag."""
    text = compilations[0].read_text()
    # Strict: a field KFP's protos do not know fails the parse.
    return json_format.Parse(text, pipeline_spec_pb2.PipelineJob()), text


@pytest.fixture(scope="session")
def default_spec(compilations):
    """PipelineSpec compiled with only --image, from YAML."""
    return json_format.ParseDict(yaml.safe_load(compilations[1].read_text()),
                                 pipeline_spec_pb2.PipelineSpec())


def spec_of(job: pipeline_spec_pb2.PipelineJob) -> pipeline_spec_pb2.PipelineSpec:
    """The job's pipeline spec (a Struct in the job) as its own proto."""
    return json_format.ParseDict(json.loads(json_format.MessageToJson(job.pipeline_spec)),
                                 pipeline_spec_pb2.PipelineSpec())


def executors_of(spec: pipeline_spec_pb2.PipelineSpec) -> dict:
    """{executor label: ExecutorSpec} of the spec's deployment config."""
    config = json_format.ParseDict(
        json.loads(json_format.MessageToJson(spec.deployment_spec)),
        pipeline_spec_pb2.PipelineDeploymentConfig())
    return dict(config.executors)
