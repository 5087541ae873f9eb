"""Fills the training window of a new store: the window's older spans are
ingested and validated first, each in a small run of its own, so the first
model sees a full window.

A bad old span stops the run just as a bad new one does.
"""
from metadata import connection, runs
from pipeline import config as pipeline_config
from pipeline import runner
from pipeline.triggers import Trigger


def spans_to_backfill(cfg: pipeline_config.PipelineConfig, span: int,
                      on_disk: list[int]) -> list[int]:
    """Spans of `span`'s window that are on disk and not ingested yet."""
    window = [s for s in on_disk if s < span][-(cfg.training_window_spans - 1):] \
        if cfg.training_window_spans > 1 else []
    config = cfg.metadata_connection
    if not connection.exists(config):
        return window
    ingested = runs.ingested_spans(connection.open_reader(config),
                                   pipeline_config.PIPELINE_NAME)
    return [s for s in window if s not in ingested]


def backfill(cfg: pipeline_config.PipelineConfig, spans: list[int], progress):
    from pipeline import pipeline as taxi_pipeline

    for span in spans:
        progress.label = f" (backfill span {span})"
        trigger = Trigger("backfill", span)
        run_id = runner.execute(taxi_pipeline.ingestion_pipeline(cfg, span),
                                cfg.metadata_connection, trigger)
        runner.record_outcome(cfg.metadata_connection, run_id, "ingested")
    progress.label = ""
