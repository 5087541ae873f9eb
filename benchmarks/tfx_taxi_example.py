"""TFX's own Chicago taxi native-Keras example, run as pipeline_bench.py's baseline.

The pipeline is the installed tfx package's `_create_pipeline` with the package's own
data (15,002 trips) and module file, ExampleGen through Pusher, on LocalDagRunner with
our runner settings (in-memory DirectRunner, one worker; `--our-beam-args` adds the
rest of this project's Beam arguments), into a fresh temporary folder that is removed
afterwards. Prints one JSON line: the Evaluator's overall metrics, whether a model was
pushed, and the folder.
    python benchmarks/tfx_taxi_example.py [--keep] [--our-beam-args]
"""
import argparse
import json
import os
import pathlib
import shutil
import sys
import tempfile

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))


def run(work_dir: pathlib.Path, our_beam_args: bool) -> dict:
    # Imported here so that TMPDIR is already set when TFX first asks for a temp folder.
    from tfx.examples.chicago_taxi_pipeline import taxi_pipeline_native_keras as example
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from pipeline.config import BEAM_PIPELINE_ARGS, LOCAL_RUNNER_ARGS
    from pipeline.lineage.artifact_files import overall_metrics

    example_dir = pathlib.Path(example.__file__).parent
    serving_dir = work_dir / "serving_model"
    pipeline = example._create_pipeline(  # pylint: disable=protected-access
        pipeline_name=example._pipeline_name,  # pylint: disable=protected-access
        pipeline_root=str(work_dir / "pipeline_root"),
        data_root=str(example_dir / "data" / "simple"),
        module_file=str(example_dir / "taxi_utils_native_keras.py"),
        serving_model_dir=str(serving_dir),
        metadata_path=str(work_dir / "metadata.sqlite"),
        beam_pipeline_args=BEAM_PIPELINE_ARGS if our_beam_args else LOCAL_RUNNER_ARGS)
    LocalDagRunner().run(pipeline)

    # The Evaluator writes one ModelEvaluation artifact, under
    # pipeline_root/Evaluator/evaluation/<execution id>.
    evaluations = sorted((work_dir / "pipeline_root" / "Evaluator" / "evaluation").glob("*"))
    metrics = overall_metrics(str(evaluations[-1])) if evaluations else {}
    return {"metrics": metrics.get("candidate", {}),
            "pushed": serving_dir.is_dir() and any(serving_dir.iterdir())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary folder (its path is printed)")
    parser.add_argument("--our-beam-args", action="store_true",
                        help="run with all of pipeline/config.py's BEAM_PIPELINE_ARGS, not "
                             "only its runner settings")
    args = parser.parse_args(argv)
    work_dir = pathlib.Path(tempfile.mkdtemp(prefix="tfx-taxi-example-"))
    # TFX's Beam executors copy the tfx package (~49 MB) to a temp folder for an sdist in
    # every Beam component, and the module file is built as a wheel in another: keep
    # them all in our folder so they go with it.
    temp_dir = work_dir / "tmp"
    temp_dir.mkdir()
    os.environ["TMPDIR"] = str(temp_dir)
    tempfile.tempdir = None  # forget any temp folder chosen before TMPDIR was set
    # TFX pip-installs the module-file wheel (no dependencies); never look at an index.
    os.environ["PIP_NO_INDEX"] = "1"
    try:
        result = run(work_dir, args.our_beam_args)
    finally:
        if not args.keep:
            shutil.rmtree(work_dir, ignore_errors=True)
    print(json.dumps({**result, "work_dir": str(work_dir) if args.keep else None}),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
