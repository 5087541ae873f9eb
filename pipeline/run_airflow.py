"""The taxi tips pipeline as an Apache Airflow DAG: on a schedule, a sensor waits
for a new complete span; if one arrives, the run backfills the training window,
records its trigger in ML Metadata, runs every TFX node as an Airflow task and
records its outcome. With nothing new the sensor gives up (skipped) and so does
every task after it: nothing is trained.

Airflow finds the DAG through dags/taxi_tips.py (AIRFLOW__CORE__DAGS_FOLDER).
Settings: pipeline/config.py (TAXI_PIPELINE_OVERRIDES) and AirflowSettings below
(TAXI_AIRFLOW_*), read from the environment when Airflow parses the DAG file.
"""
import dataclasses
import datetime
import functools
import json
import os
import pathlib
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # Keras 2, before TF loads
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from pipeline import config as pipeline_config  # noqa: E402

DAG_ID = pipeline_config.PIPELINE_NAME
SENSOR_TASK, BACKFILL_TASK, REGISTER_TASK, OUTCOME_TASK = (
    "wait_for_new_span", "backfill_window", "register_run", "record_outcome")


@dataclasses.dataclass
class AirflowSettings:
    """The DAG's own knobs; each has an environment variable (same name, upper
    case, prefixed TAXI_AIRFLOW_) that the DAG file reads when Airflow parses it."""
    # How often Airflow starts a run that looks for a new span (the watcher's
    # --check-every); a cron string or preset, or "none" for manual runs only.
    schedule: str = "@hourly"
    # The sensor looks every poke_interval seconds and gives up (the run is
    # skipped) after timeout seconds, before the next scheduled run starts.
    sensor_poke_interval: float = pipeline_config.PipelineConfig.check_every_seconds
    sensor_timeout: float = 50 * 60
    # "reschedule" frees the worker slot between looks; "poke" holds it.
    sensor_mode: str = "reschedule"
    start_date: str = "2024-01-01"


def airflow_settings() -> AirflowSettings:
    defaults = AirflowSettings()
    values = {}
    for field in dataclasses.fields(AirflowSettings):
        text = os.environ.get(f"TAXI_AIRFLOW_{field.name.upper()}")
        if text is not None:
            values[field.name] = type(getattr(defaults, field.name))(text)
    return dataclasses.replace(defaults, **values)


def pipeline_config_from_env() -> pipeline_config.PipelineConfig:
    """PipelineConfig with TAXI_PIPELINE_OVERRIDES (a JSON object of its fields,
    e.g. {"train_steps": 300}) applied: Airflow parses the DAG file itself, so
    the knobs run_local.py takes as flags come from the environment here."""
    cfg = pipeline_config.PipelineConfig()
    text = os.environ.get("TAXI_PIPELINE_OVERRIDES", "")
    if not text:
        return cfg
    try:
        overrides = json.loads(text)
        fields = {field.name: field for field in dataclasses.fields(cfg)}
        unknown = sorted(set(overrides) - set(fields))
        if unknown:
            raise ValueError(f"not PipelineConfig fields: {', '.join(unknown)}")
        for name, value in overrides.items():
            default = getattr(cfg, name)
            if isinstance(default, (pathlib.Path, tuple, int, float)) \
                    and not isinstance(default, bool):
                overrides[name] = type(default)(value)  # TFX checks exact types
    except (ValueError, TypeError) as error:
        raise ValueError(f"TAXI_PIPELINE_OVERRIDES is not a JSON object of "
                         f"pipeline/config.py's PipelineConfig fields ({error}): "
                         f"{text!r}") from None
    return dataclasses.replace(cfg, **overrides)


# --- What the tasks run ---------------------------------------------------------

def new_span(cfg: pipeline_config.PipelineConfig):
    """The sensor's look: the newest complete span on disk if a span arrived that
    no run handled yet, as the watcher decides (pipeline/watch.py); else False."""
    from airflow.sensors.base import PokeReturnValue

    from metadata import connection, runs
    from pipeline import triggers

    on_disk = triggers.complete_spans(cfg.data_dir)
    config = cfg.metadata_connection
    handled = runs.handled_spans(connection.open_reader(config)) \
        if connection.exists(config) else set()
    due = triggers.new_spans(on_disk, handled)
    # ExampleGen's driver takes the newest span on disk (the DAG is compiled once,
    # with no span), so a run takes the newest of several new spans.
    return PokeReturnValue(is_done=bool(due), xcom_value=on_disk[-1] if due else None)


def _span(context) -> int:
    return context["ti"].xcom_pull(task_ids=SENSOR_TASK)


def backfill_window(cfg: pipeline_config.PipelineConfig, **context):
    """A new store: the older spans of the window are ingested first, each in a
    small run of its own, as local runs do (pipeline/backfill.py)."""
    from pipeline import backfill, progress, runner, triggers

    cfg.output_dir.mkdir(parents=True, exist_ok=True)  # for the SQLite store
    spans = backfill.spans_to_backfill(cfg, _span(context),
                                       triggers.complete_spans(cfg.data_dir))
    try:
        backfill.backfill(cfg, spans, progress.ProgressPrinter(sys.stdout))
    except Exception as error:  # a bad old span: its run says why, as a local run's does
        if getattr(error, "run_id", None):
            runner.record_outcome(cfg.metadata_connection, error.run_id, "failed", str(error))
        raise
    return spans


def tfx_run_id(context) -> str:
    """TFX's run id (the pipeline_run context in ML Metadata) is Airflow's, so
    a task cleared and run again joins the same TFX run."""
    return f"airflow:{context['dag_run'].run_id}"


def register_run(cfg: pipeline_config.PipelineConfig, **context):
    """Records why the run started, before TFX runs a node: the new span, and
    the Airflow run that found it (the local runner does the same)."""
    from metadata import connection, runs

    run_id, span = tfx_run_id(context), _span(context)
    recorded = {runs.TRIGGER: f"new span {span}", runs.SPAN: span,
                runs.TRIGGER_DETAIL: f"Airflow {context['dag_run'].run_type} run "
                                     f"{context['dag_run'].run_id}"}
    store = connection.open_store(cfg.metadata_connection)
    if runs.run_context(store, run_id) is None:
        runs.register_run(store, run_id, **recorded)
    else:  # a retried task: the run is the same
        runs.update_run(store, run_id, **recorded)


def run_node(ir_bytes: bytes, node_id: str, **context):
    """One TFX node of this run, as TFX's LocalDagRunner runs it: the portable
    launcher resolves its inputs from ML Metadata, honours the DAG's conditions
    (skips) and the cache, runs the executor and publishes the outputs."""
    from tfx.dsl.compiler import constants
    from tfx.orchestration import metadata
    from tfx.orchestration.local import runner_utils
    from tfx.orchestration.portable import launcher, runtime_parameter_utils
    from tfx.proto.orchestration import pipeline_pb2

    ir = pipeline_pb2.Pipeline.FromString(ir_bytes)
    runtime_parameter_utils.substitute_runtime_parameter(
        ir, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: tfx_run_id(context)})
    deployment = runner_utils.extract_local_deployment_config(ir)
    connection_config = getattr(
        deployment.metadata_connection_config,
        deployment.metadata_connection_config.WhichOneof("connection_config"))
    [node] = [n.pipeline_node for n in ir.nodes if n.pipeline_node.node_info.id == node_id]
    launcher.Launcher(
        pipeline_node=node,
        mlmd_connection=metadata.Metadata(connection_config),
        pipeline_info=ir.pipeline_info,
        pipeline_runtime_spec=ir.runtime_spec,
        executor_spec=runner_utils.extract_executor_spec(deployment, node_id),
        custom_driver_spec=runner_utils.extract_custom_driver_spec(deployment, node_id),
    ).launch()


def record_outcome(cfg: pipeline_config.PipelineConfig, **context):
    """Reads back what the run did (pushed version, not blessed, not retrained,
    ...) and records it on the run, as the local runner does; fails the Airflow
    run, after recording, when a TFX task failed."""
    from airflow.exceptions import AirflowFailException, AirflowSkipException
    from airflow.utils.state import TaskInstanceState

    from metadata import connection, runs
    from pipeline import run_summary

    dag_run = context["dag_run"]
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    failed = sorted(task for task, state in states.items()
                    if state in (TaskInstanceState.FAILED, TaskInstanceState.UPSTREAM_FAILED))
    if states.get(REGISTER_TASK) != TaskInstanceState.SUCCESS:
        if failed:  # the backfill: its failed run recorded why
            raise AirflowFailException(f"tasks failed before the run started: "
                                       f"{', '.join(failed)}; see their logs in Airflow")
        raise AirflowSkipException("no new span: nothing was run")
    run_id = tfx_run_id(context)
    store = connection.open_store(cfg.metadata_connection)
    if failed:
        runs.update_run(store, run_id, outcome="failed",
                        outcome_detail=f"Airflow tasks failed: {', '.join(failed)}")
        raise AirflowFailException(f"TFX run {run_id}: tasks failed: {', '.join(failed)}; "
                                   f"see their logs in Airflow")
    summary = run_summary.summarize_run(store, run_id)
    outcome, detail = summary.status()
    runs.update_run(store, run_id, outcome=outcome, outcome_detail=detail)
    print(summary.outcome())
    return outcome


# --- The DAG --------------------------------------------------------------------

def compiled_pipeline(cfg: pipeline_config.PipelineConfig):
    """The pipeline's IR, compiled once when Airflow parses the DAG file, with no
    span: ExampleGen's driver takes the newest one when the run starts."""
    from tfx.dsl.compiler import compiler

    from pipeline import pipeline as taxi_pipeline
    from pipeline import triggers

    train_when = triggers.train_when(triggers.Trigger("new span", 0), cfg.retrain_on)
    return compiler.Compiler().compile(
        taxi_pipeline.create_pipeline(cfg, span=None, train_when=train_when))


def create_dag(cfg: pipeline_config.PipelineConfig | None = None,
               settings: AirflowSettings | None = None):
    from airflow import DAG
    from airflow.operators.python import PythonOperator
    from airflow.sensors.python import PythonSensor
    from airflow.utils.trigger_rule import TriggerRule

    cfg = cfg or pipeline_config_from_env()
    settings = settings or airflow_settings()
    ir = compiled_pipeline(cfg)
    ir_bytes = ir.SerializeToString()
    schedule = None if settings.schedule.lower() == "none" else settings.schedule

    with DAG(dag_id=DAG_ID, schedule=schedule,
             start_date=datetime.datetime.fromisoformat(settings.start_date).replace(
                 tzinfo=datetime.timezone.utc),
             # One run at a time on one store, as the local run lock ensures;
             # no catch-up: a missed look is no new span.
             catchup=False, max_active_runs=1,
             doc_md=__doc__, tags=["tfx"]) as dag:
        sensor = PythonSensor(
            task_id=SENSOR_TASK, python_callable=functools.partial(new_span, cfg),
            poke_interval=settings.sensor_poke_interval, timeout=settings.sensor_timeout,
            mode=settings.sensor_mode, soft_fail=True)
        # The callables get their arguments bound, not as op_args: Airflow renders
        # op_args as templates and stores them with the serialized DAG.
        backfill = PythonOperator(task_id=BACKFILL_TASK,
                                  python_callable=functools.partial(backfill_window, cfg))
        register = PythonOperator(task_id=REGISTER_TASK,
                                  python_callable=functools.partial(register_run, cfg))
        sensor >> backfill >> register
        tasks = {}
        for node in ir.nodes:
            node_id = node.pipeline_node.node_info.id
            tasks[node_id] = PythonOperator(
                task_id=node_id,
                python_callable=functools.partial(run_node, ir_bytes, node_id))
        for node in ir.nodes:
            task = tasks[node.pipeline_node.node_info.id]
            upstream = [tasks[u] for u in node.pipeline_node.upstream_nodes]
            (upstream or [register]) >> task
        outcome = PythonOperator(task_id=OUTCOME_TASK,
                                 python_callable=functools.partial(record_outcome, cfg),
                                 trigger_rule=TriggerRule.ALL_DONE)
        list(tasks.values()) >> outcome
    return dag
