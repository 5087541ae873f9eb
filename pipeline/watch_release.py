"""The watcher's release look (`--serving-metrics-url`): one automatic decision
per look, as `python -m pipeline.release check` makes it, so the process that
pushes a version also promotes or rolls it back."""
from metadata import connection
from pipeline import config as pipeline_config
from pipeline.release import actions, automatic, policy


def check_canary(cfg: pipeline_config.PipelineConfig, out, said: dict) -> None:
    """Labels a loaded new version, judges the canary. Says what changed, and
    a wait or a refusal once, not at every look (`said` keeps the last words)."""
    if not cfg.serving_config_path.exists():
        return  # nothing pushed yet
    changed = False
    try:
        release = actions.Release(cfg, connection.open_store(cfg.metadata_connection),
                                  cfg.serving_metrics_url)
        report = automatic.check(release, policy.Bounds.from_config(cfg))
        text, changed = report.text, report.changed
    except (actions.Refused, connection.StoreError) as error:
        text = f"Release check: {error}"
    except Exception as error:  # a broken server page must not stop the watcher
        text = f"Release check failed: {type(error).__name__}: {error}"
    # A waiting canary's counts change at every look; its version does not.
    gist = text.split(":")[0]
    if changed or said.get("gist") != gist:
        print(text, file=out, flush=True)
    said["gist"] = None if changed else gist
