"""`run_local.py --beam-arg`: the arguments reach every Beam-powered component.

Dataflow, Flink and Spark are checked in the compiled pipeline (their runners
need a cloud project or a job server download, docs/beam.md); the multi-process
DirectRunner really runs, on a small slice, with two worker processes.
"""
import subprocess
import threading

import psutil
import pytest

from tests.conftest import PROJECT_ROOT, PYTHON, make_spans

# The argument sets docs/beam.md documents, as a user passes them.
RUNNER_ARGS = {
    "dataflow": ["--runner=DataflowRunner", "--project=my-project", "--region=us-central1",
                 "--temp_location=gs://my-bucket/tmp", "--machine_type=n1-standard-4",
                 "--max_num_workers=10"],
    "flink": ["--runner=FlinkRunner", "--flink_master=localhost:8081",
              "--flink_version=1.18", "--environment_type=LOOPBACK", "--parallelism=2"],
    "spark": ["--runner=SparkRunner", "--spark_master_url=spark://localhost:7077",
              "--spark_version=3", "--environment_type=LOOPBACK"],
}
MULTI_PROCESS = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
SPAN = 16


def compiled_beam_args(pipeline) -> dict[str, list[str]]:
    """{node id: beam_pipeline_args} of every node whose executor in the compiled
    IR is a Beam one, as LocalDagRunner (or any IR runner) receives them."""
    from tfx.dsl.compiler import compiler
    from tfx.proto.orchestration import executable_spec_pb2, pipeline_pb2

    ir = compiler.Compiler().compile(pipeline)
    deployment = pipeline_pb2.IntermediateDeploymentConfig()
    ir.deployment_config.Unpack(deployment)
    found = {}
    for node_id, spec in deployment.executor_specs.items():
        if spec.Is(executable_spec_pb2.BeamExecutableSpec.DESCRIPTOR):
            beam = executable_spec_pb2.BeamExecutableSpec()
            spec.Unpack(beam)
            found[node_id] = list(beam.beam_pipeline_args)
    return found


def beam_components(pipeline) -> set[str]:
    from tfx.dsl.components.base import executor_spec

    return {node.id for node in pipeline.components
            if isinstance(getattr(node, "executor_spec", None), executor_spec.BeamExecutorSpec)}


@pytest.mark.parametrize("runner", sorted(RUNNER_ARGS))
def test_beam_args_reach_every_beam_component_of_both_pipelines(runner, tmp_path):
    from pipeline import config, pipeline as taxi_pipeline, run_local

    user_args = RUNNER_ARGS[runner]
    cfg, _ = run_local.parse_args(["--data-dir", str(tmp_path), "--output-dir", str(tmp_path),
                                   *(f"--beam-arg={arg}" for arg in user_args)])
    # The training run and a backfill run, built as pipeline/runner.py and
    # pipeline/backfill.py build them (the Beam arguments come from cfg).
    for pipeline in (taxi_pipeline.create_pipeline(cfg, SPAN),
                     taxi_pipeline.ingestion_pipeline(cfg, SPAN)):
        compiled = compiled_beam_args(pipeline)
        assert set(compiled) == beam_components(pipeline)
        for node_id, args in compiled.items():
            # The defaults first, the user's after them, so that theirs win.
            assert args == config.BEAM_PIPELINE_ARGS + user_args, node_id
    assert {"CsvExampleGen", "StatisticsGen", "Transform", "Evaluator"} <= set(
        compiled_beam_args(taxi_pipeline.create_pipeline(cfg, SPAN)))


def test_an_unknown_beam_flag_stops_before_anything_runs(tmp_path):
    result = subprocess.run(
        [PYTHON, str(PROJECT_ROOT / "pipeline" / "run_local.py"),
         "--data-dir", str(tmp_path / "data"), "--output-dir", str(tmp_path / "out"),
         "--beam-arg=--direct_num_workers=2", "--beam-arg=--direct_runing_mode=multi_processing"],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert result.returncode == 2
    assert "--direct_runing_mode" in result.stderr
    assert not (tmp_path / "out").exists()


def beam_worker_processes(root: psutil.Process) -> set[int]:
    workers = set()
    for process in root.children(recursive=True):
        try:
            if "apache_beam.runners.worker.sdk_worker_main" in process.cmdline():
                workers.add(process.pid)
        except psutil.Error:  # it ended meanwhile
            pass
    return workers


class WorkerWatch(threading.Thread):
    """Collects the Beam worker processes this process starts, while it runs."""

    def __init__(self):
        super().__init__(daemon=True)
        self.workers: set[int] = set()
        self.done = threading.Event()

    def run(self):
        me = psutil.Process()
        while not self.done.wait(0.2):
            self.workers |= beam_worker_processes(me)


def test_a_run_on_the_multi_process_direct_runner_succeeds(tmp_path):
    """A backfill run (ExampleGen and StatisticsGen: every Beam component of an
    ingestion), as run_local.py starts it. The whole pipeline on this runner is
    benchmarks/scale_bench.py's: a test of it took 6 minutes on a busy machine."""
    from metadata import connection, runs
    from ml_metadata.proto import metadata_store_pb2
    from pipeline import pipeline as taxi_pipeline, run_local, runner
    from pipeline.triggers import Trigger

    data_dir, output_dir = tmp_path / "data", tmp_path / "out"
    make_spans(data_dir, SPAN, SPAN)
    output_dir.mkdir()
    cfg, _ = run_local.parse_args(["--data-dir", str(data_dir), "--output-dir", str(output_dir),
                                   *(f"--beam-arg={arg}" for arg in MULTI_PROCESS)])
    watch = WorkerWatch()
    watch.start()
    try:
        run_id = runner.execute(taxi_pipeline.ingestion_pipeline(cfg, SPAN),
                                cfg.metadata_connection, Trigger("backfill", SPAN))
    finally:
        watch.done.set()
        watch.join()

    # The Beam components ran in Beam's worker processes, two at a time.
    assert len(watch.workers) >= 2
    store = connection.open_reader(cfg.metadata_connection)
    node_type = store.get_context_type("node")
    executions = {execution.id: execution for execution in runs.executions_of_run(store, run_id)}
    complete = {context.name.split(".", 1)[1]
                for context in store.get_contexts_by_type(node_type.name)
                for execution in store.get_executions_by_context(context.id)
                if execution.id in executions
                and execution.last_known_state == metadata_store_pb2.Execution.COMPLETE}
    assert complete == {"CsvExampleGen", "StatisticsGen", "ImportSchemaGen",
                        "ExampleValidator", "ValidationGate"}
    [statistics] = store.get_artifacts_by_type("ExampleStatistics")
    assert statistics.state == metadata_store_pb2.Artifact.LIVE
