"""Compile the taxi tips pipeline for Kubeflow Pipelines v2 / Vertex AI Pipelines.

Writes a PipelineJob (JSON, or YAML for a .yaml name) whose every task runs in
IMAGE, built from this project's Dockerfile. Offline: nothing is uploaded or
submitted; docs/kubeflow.md shows how to build the image and submit the job.
"""
import argparse
import json
import os
import pathlib
import re
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # Keras 2, before TF loads
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from pipeline import config as pipeline_config  # noqa: E402

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# A container image reference: [registry[:port]/]path[:tag][@digest], lower-case path.
IMAGE_REFERENCE = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._/-][a-z0-9]+)*"
    r"(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$")
OUTPUT_SUFFIXES = (".json", ".yaml", ".yml")


def parse_args(argv):
    defaults = pipeline_config.PipelineConfig()
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--image", required=True,
                        help="the image built from this project's Dockerfile, e.g. "
                             "us-docker.pkg.dev/PROJECT/REPO/taxi-tips:1")
    parser.add_argument("-o", "--output", type=pathlib.Path,
                        default=pathlib.Path("pipeline.json"),
                        help="the PipelineJob file to write (.json, or .yaml for the "
                             "pipeline spec alone)")
    parser.add_argument("--pipeline-root", default=str(defaults.pipeline_root),
                        help="where the tasks write their artifacts: gs://... on Vertex AI")
    parser.add_argument("--data-root", default=str(defaults.data_dir),
                        help="default of the `data_root` runtime parameter: the folder "
                             "of span-N/ folders the tasks read")
    parser.add_argument("--serving-dir", default=str(defaults.serving_model_dir),
                        help="default of the `push_destination` runtime parameter's base "
                             "directory: where the Pusher writes model versions")
    parser.add_argument("--train-steps", type=int, default=defaults.train_steps,
                        help="default of the `train_args` runtime parameter's numSteps: "
                             "the Trainer's steps")
    args = parser.parse_args(argv)
    if not IMAGE_REFERENCE.match(args.image):
        parser.error(f"--image {args.image!r} is not a container image reference; "
                     f"give one like gcr.io/PROJECT/taxi-tips:1")
    if args.output.suffix not in OUTPUT_SUFFIXES:
        parser.error(f"-o/--output {str(args.output)!r}: the file name must end in "
                     f"{', '.join(OUTPUT_SUFFIXES)}")
    if args.output.is_dir():
        parser.error(f"-o/--output {str(args.output)!r} is a folder; name the file "
                     f"to write, e.g. {args.output / 'pipeline.json'}")
    for flag, value in (("--pipeline-root", args.pipeline_root),
                        ("--data-root", args.data_root), ("--serving-dir", args.serving_dir)):
        if not value.strip():
            parser.error(f"{flag} is empty; give a path or a gs:// URI")
    if args.train_steps < 1:
        parser.error(f"--train-steps must be at least 1, got {args.train_steps}")
    return args


def compile_pipeline(args) -> dict:
    """The PipelineJob as a JSON dict. Runtime parameters get their defaults both
    in the job's runtime config (Vertex AI) and in the spec's inputs (the KFP UI)."""
    # Imported after the flags are checked: TFX takes seconds to import.
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

    from pipeline.pipeline import kubeflow_pipeline

    cfg = pipeline_config.PipelineConfig(train_steps=args.train_steps)
    tfx_pipeline = kubeflow_pipeline(cfg, pipeline_root=args.pipeline_root,
                                     data_root=args.data_root,
                                     serving_model_dir=args.serving_dir)
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
            default_image=args.image,
            # Schema 2.1: what KFP v2's backend and Vertex AI take today.
            use_pipeline_spec_2_1=True))
    defaults = runtime_defaults(tfx_pipeline)
    job = runner.run(tfx_pipeline, parameter_values=defaults, write_out=False)
    inputs = job["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]
    for name, default in defaults.items():
        inputs[name].update(defaultValue=default, isOptional=True)
    return job


def runtime_defaults(tfx_pipeline) -> dict:
    """{name: default} of every RuntimeParameter in the DAG's execution properties."""
    from tfx.orchestration.data_types import RuntimeParameter
    return {value.name: value.default
            for component in tfx_pipeline.components
            for value in component.exec_properties.values()
            if isinstance(value, RuntimeParameter)}


def write(job: dict, output: pathlib.Path) -> None:
    """The PipelineJob as JSON; YAML holds the pipeline spec alone, as the KFP UI takes it."""
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix == ".json":
        output.write_text(json.dumps(job, indent=2, sort_keys=True) + "\n")
    else:
        import yaml
        output.write_text(yaml.safe_dump(job["pipelineSpec"], sort_keys=True))


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        job = compile_pipeline(args)
        write(job, args.output)
    except (ValueError, TypeError, NotImplementedError, OSError) as error:
        print(f"run_kubeflow: could not compile the pipeline: {error}", file=sys.stderr)
        return EXIT_FAILED
    spec = job["pipelineSpec"]
    parameters = job["runtimeConfig"].get("parameterValues", {})
    print(f"Wrote {args.output}: pipeline {spec['pipelineInfo']['name']}, "
          f"{len(spec['root']['dag']['tasks'])} tasks, image {args.image}")
    for name, value in sorted(parameters.items()):
        print(f"  runtime parameter {name} = {value}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
