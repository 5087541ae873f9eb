"""After the Pusher: the pushed version becomes the canary in the serving config
file (pipeline/release/), and the move is recorded in ML Metadata.

The Pusher only writes the version folder; clients keep getting `stable`. The
version is added to the versions the server loads; if the server answers at
serving_metrics_url, the `canary` label moves onto it in this same step once the
server reports it AVAILABLE, else at the next `python -m pipeline.release check`.
Its output `outcome` says what it did; a cached run reuses it, so lineage can
tell which execution did the release step.
"""
import dataclasses
import pathlib

from absl import logging
# Not `from tfx import v1`: see pipeline/pipeline.py.
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputDict, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from metadata import connection
from pipeline import config as pipeline_config
from pipeline.release import actions


@component
def ReleaseCanary(
        pushed_model: InputArtifact[standard_artifacts.PushedModel],
        output_dir: Parameter[str],
        # ML Metadata's ConnectionConfig as a text proto (connection.to_text: an
        # exec property is stored in ML Metadata, so it holds no password; opening
        # the store reads it from the environment): the executor records the
        # release in the store the pipeline writes.
        metadata_connection: Parameter[str],
        serving_metrics_url: Parameter[str] = "",
        load_timeout_seconds: Parameter[float] = 60.0,
) -> OutputDict(outcome=str):
    if pushed_model.get_int_custom_property("pushed") != 1:
        return {"outcome": "Nothing was pushed: the serving config stays as it is."}
    version = int(pushed_model.get_string_custom_property("pushed_version"))
    cfg = dataclasses.replace(pipeline_config.PipelineConfig(),
                              output_dir=pathlib.Path(output_dir),
                              canary_load_timeout_seconds=load_timeout_seconds)
    # The serving config names the base path the Pusher wrote to (a gs:// or
    # s3:// URI when pushed there: docs/remote-push.md).
    pushed_to = pushed_model.get_string_custom_property("pushed_destination")
    if "://" in pushed_to:
        cfg = dataclasses.replace(cfg, push_destination=pushed_to.rsplit("/", 1)[0])
    config = connection.from_text(metadata_connection)
    release = actions.Release(cfg, connection.open_store(config), serving_metrics_url or None)
    outcome = " ".join(filter(None, [
        actions.add_version(release, version, "pushed by the pipeline"),
        actions.label_pending(release, "pushed by the pipeline")]))
    logging.info(outcome)
    return {"outcome": outcome}
