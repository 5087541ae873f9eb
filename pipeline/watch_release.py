"""The watcher's release look (`--serving-metrics-url`): one automatic decision
per look, as `python -m pipeline.release check` makes it, so the process that
pushes a version also promotes or rolls it back."""
from metadata import connection
from pipeline import config as pipeline_config
from pipeline.release import actions, policy


def check_canary(cfg: pipeline_config.PipelineConfig, out) -> None:
    """Labels a loaded new version, judges the canary; one line per change.
    A server that cannot be read is said once per look, never stops the watcher."""
    if not cfg.serving_config_path.exists():
        return  # nothing pushed yet
    try:
        release = actions.Release(cfg, connection.open_store(cfg.metadata_connection),
                                  cfg.serving_metrics_url)
        text = actions.check(release, policy.Bounds.from_config(cfg))
    except (actions.Refused, connection.StoreError) as error:
        text = f"Release check: {error}"
    except Exception as error:  # a broken server page must not stop the watcher
        text = f"Release check failed: {type(error).__name__}: {error}"
    print(text, file=out, flush=True)
