"""Runs one pipeline run with TFX's LocalDagRunner and records in ML Metadata
why it started (its trigger) and how it ended (its outcome).

The run id is chosen here, not by TFX, so that the run's context can carry its
trigger from the first second: a run killed at once still says why it ran.
"""
import contextlib
import datetime
import time

from metadata import connection, runs
from pipeline import config as pipeline_config
from pipeline import progress as progress_lines
from pipeline import skew_alarms, triggers
from pipeline.triggers import Trigger

EXIT_OK, EXIT_FAILED = 0, 1


class StopRequested(KeyboardInterrupt):
    """SIGTERM or Ctrl-C arrived during a run: abandon it cleanly. A
    KeyboardInterrupt, so that no library's `except Exception` swallows it."""


def start_run(tfx_pipeline, connection_config, trigger: Trigger):
    """Compiles the pipeline and registers its run; returns (run id, IR)."""
    from tfx.dsl.compiler import compiler
    from tfx.dsl.compiler import constants
    from tfx.orchestration.portable import runtime_parameter_utils

    ir = compiler.Compiler().compile(tfx_pipeline)
    run_id = datetime.datetime.now().isoformat()
    runtime_parameter_utils.substitute_runtime_parameter(
        ir, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_id})
    recorded = {runs.TRIGGER: trigger.label(), runs.SPAN: trigger.span}
    if trigger.detail:
        recorded[runs.TRIGGER_DETAIL] = trigger.detail
    if trigger.skew_check is not None:
        # Once the run ends, this alarm counts as acted on (pipeline/skew_alarms.py).
        recorded[skew_alarms.SKEW_CHECK] = trigger.skew_check
    runs.register_run(connection.open_store(connection_config), run_id, **recorded)
    return run_id, ir


def execute(tfx_pipeline, connection_config, trigger: Trigger) -> str:
    """Runs the pipeline to the end; returns the run id. TFX's errors propagate
    with the run id attached as `error.run_id`."""
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    run_id, ir = start_run(tfx_pipeline, connection_config, trigger)
    try:
        LocalDagRunner().run_with_ir(ir)
    except BaseException as error:
        error.run_id = run_id
        raise
    return run_id


def record_outcome(connection_config, run_id: str, outcome: str, detail: str = "",
                   **properties):
    runs.update_run(connection.open_store(connection_config), run_id,
                    outcome=outcome, outcome_detail=detail, **properties)


def record_stop(connection_config, run_id: str, reason: str):
    """A stopped run: its unfinished and failed executions become CANCELED."""
    store = connection.open_store(connection_config)
    Execution = runs.Execution
    interrupted = [e for e in runs.executions_of_run(store, run_id)
                   if e.last_known_state in runs.UNFINISHED + (Execution.FAILED,)]
    runs.cancel_executions(store, interrupted, reason)
    runs.update_run(store, run_id, outcome="stopped", outcome_detail=reason)


def _trigger_after_decision(trigger: Trigger, summary) -> dict:
    """A new span that trained because it decayed or drifted was triggered by
    that: record 'decay' or 'drift', with the measurement, as the trigger."""
    reason = summary.retrain_reason or ""
    kind = reason.split(":", 1)[0]
    if trigger.kind in ("new span", "manual") and summary.retrain and kind in ("decay", "drift"):
        return {runs.TRIGGER: kind, runs.TRIGGER_DETAIL: f"span {trigger.span}: {reason}"}
    return {}


def run(cfg: pipeline_config.PipelineConfig, trigger: Trigger, on_disk: list[int],
        out, stop_signals=None) -> int:
    """Backfill if needed, run the pipeline for the trigger's span, record the
    outcome, print the report. Returns the exit status."""
    from pipeline import backfill, run_summary

    print(f"Pipeline {pipeline_config.PIPELINE_NAME}: span {trigger.span} "
          f"({trigger.label()}); spans {on_disk[0]}..{on_disk[-1]} on disk; training "
          f"window: the latest {cfg.training_window_spans} that pass validation",
          file=out, flush=True)
    progress = progress_lines.ProgressPrinter(out)
    started = time.time()
    error, run_id = None, None
    config = cfg.metadata_connection
    train_when = triggers.train_when(trigger, cfg.retrain_on)
    with progress_lines.logs_to_file(cfg.log_path, progress):
        # TFX is imported here, so that its import-time warnings go to the log
        # and --help or a missing data folder do not wait for it.
        from pipeline import pipeline as taxi_pipeline
        try:
            with stop_signals.during_run() if stop_signals else contextlib.nullcontext():
                backfill.backfill(cfg, backfill.spans_to_backfill(cfg, trigger.span, on_disk),
                                  progress)
                run_id = execute(taxi_pipeline.create_pipeline(cfg, trigger.span,
                                                               train_when=train_when),
                                 config, trigger)
        except BaseException as exc:  # reported below, with the log file for details
            error, run_id = exc, getattr(exc, "run_id", run_id)
            progress.finish("STOPPED" if isinstance(exc, StopRequested) else "FAILED")
            if not isinstance(exc, Exception) and not isinstance(exc, StopRequested):
                raise
        summary = run_summary.RunSummary()
        if run_id is not None:
            try:
                summary = run_summary.summarize_run(connection.open_store(config), run_id)
                _record(config, run_id, trigger, summary, error)
            except Exception as exc:  # a summary that cannot be read is no reason to crash
                progress.say(f"Could not summarize the run from ML Metadata: {exc}")

    run_summary.print_report(summary, error, time.time() - started, cfg, out)
    return EXIT_OK if error is None else EXIT_FAILED


def _record(config, run_id, trigger, summary, error):
    if isinstance(error, StopRequested):
        record_stop(config, run_id, str(error))
    elif error is not None:
        record_outcome(config, run_id, "failed", str(error))
    else:
        outcome, detail = summary.status()
        record_outcome(config, run_id, outcome, detail,
                       **_trigger_after_decision(trigger, summary))
