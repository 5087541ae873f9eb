"""The watcher: runs the pipeline by itself when a span of data arrives, when
the serving monitor raised a skew alarm (`--retrain-on skew`) and on a
schedule, until SIGTERM or Ctrl-C (`run_local.py --watch`); with
`--serving-metrics-url`, it also promotes or rolls back the canary.

Everything it needs to resume is in ML Metadata (which spans were handled,
which alarm was acted on, when the schedule last ran), so a restarted watcher
carries on where the last one stopped.
"""
import time

from metadata import connection, runs
from pipeline import config as pipeline_config
from pipeline import (recovery, run_lock, runner, skew_alarms, triggers, watch_release,
                      watch_serving)
from pipeline.triggers import Trigger


def _store(cfg):
    config = cfg.metadata_connection
    return connection.open_reader(config) if connection.exists(config) else None


def _newest_handled(handled: set[int], on_disk: list[int]) -> int:
    """The span a retraining without new data runs on: the newest one handled."""
    return max(handled & set(on_disk), default=on_disk[-1])


def skew_trigger(store, on_disk: list[int]) -> Trigger | None:
    """A skew run, if a serving check raised an alarm no run acted on yet."""
    alarm = skew_alarms.unhandled_alarm(store) if store and on_disk else None
    if alarm is None:
        return None
    return skew_alarms.trigger_for(alarm, _newest_handled(runs.handled_spans(store), on_disk))


def due_triggers(cfg: pipeline_config.PipelineConfig, on_disk: list[int],
                 watching_since: float) -> list[Trigger]:
    """New spans, oldest first; else a skew alarm; else the schedule, if due.
    One retraining per look: the next look sees what it changed (a skew alarm
    of a version no longer served is moot)."""
    store = _store(cfg)
    handled = runs.handled_spans(store) if store else set()
    due = [Trigger("new span", span) for span in triggers.new_spans(on_disk, handled)]
    alarm = skew_trigger(store, on_disk) if "skew" in cfg.retrain_on and not due else None
    if alarm:
        due.append(alarm)
    if cfg.retrain_every_seconds and on_disk and not due:
        last = runs.last_run_with_trigger(store, "schedule") if store else None
        last_time = last.create_time_since_epoch / 1000 if last else watching_since
        if time.time() - last_time >= cfg.retrain_every_seconds:
            due.append(Trigger("schedule", _newest_handled(handled, on_disk)))
    return due


def one_pass_trigger(cfg: pipeline_config.PipelineConfig, on_disk: list[int]) -> Trigger | None:
    """What a manual run (no --watch) runs: with `--retrain-on` naming skew, an
    alarm no run acted on yet; else the newest span, on demand. None: skew is
    the only policy, a model is served and no alarm is due."""
    if "skew" in cfg.retrain_on:
        store = _store(cfg)
        found = skew_trigger(store, on_disk)
        if found:
            return found
        if cfg.retrain_on == ("skew",) and store and skew_alarms.served_version(store):
            return None
    return Trigger("manual", on_disk[-1])


def run_under_lock(cfg, trigger, on_disk, out, stop, wait: bool) -> int:
    """One run, holding the metadata store's run lock; repairs first what an
    interrupted run left."""
    def waiting(holder):
        print(f"Waiting for the run lock: {run_lock.describe(holder)} ...", file=out, flush=True)

    with run_lock.hold_for_store(cfg, run_lock.RUN_LOCK, f"{trigger.label()} run",
                                 wait=wait, on_wait=waiting):
        config = cfg.metadata_connection
        if connection.exists(config):
            repairs = recovery.recover(connection.open_store(config), cfg.pipeline_root,
                                       cfg.serving_model_dir)
            if repairs:
                print(repairs.describe(), file=out, flush=True)
        return runner.run(cfg, trigger, on_disk, out, stop)


def watch(cfg: pipeline_config.PipelineConfig, out, stop) -> int:
    with run_lock.hold_for_store(cfg, run_lock.WATCH_LOCK, "watcher"):
        schedule = (f"every {cfg.retrain_every_seconds:g}s" if cfg.retrain_every_seconds
                    else "off")
        requests = (f"; judging the requests logged in {cfg.request_logs} per "
                    f"{cfg.serving_window_seconds:g}s window once it is over"
                    if cfg.request_logs else "")
        release = (f"; promoting or rolling back the canary by the metrics at "
                   f"{cfg.serving_metrics_url}" if cfg.serving_metrics_url else "")
        print(f"Watching {cfg.data_dir} for new spans every {cfg.check_every_seconds:g}s; "
              f"retraining on {','.join(cfg.retrain_on)}; schedule {schedule}{requests}"
              f"{release}. "
              f"Ctrl-C or SIGTERM stops.", file=out, flush=True)
        watching_since = time.time()
        # A run that failed before ML Metadata could record it would be due
        # again at every look; it is tried once per watcher.
        tried = set()
        release_said = {}  # the release look's last words, said once
        while not stop.requested:
            on_disk = triggers.complete_spans(cfg.data_dir)
            if cfg.request_logs:
                watch_serving.check_finished_windows(cfg, out)
            if cfg.serving_metrics_url:
                watch_release.check_canary(cfg, out, release_said)
            for trigger in due_triggers(cfg, on_disk, watching_since):
                if stop.requested or trigger in tried:
                    continue
                tried.add(trigger)
                run_under_lock(cfg, trigger, on_disk, out, stop, wait=True)
                if trigger.kind == "schedule":
                    watching_since = time.time()
                    tried.discard(trigger)
            stop.sleep(cfg.check_every_seconds)
        print(f"Watcher {stop.reason or 'stopped'}.", file=out, flush=True)
    return 0
