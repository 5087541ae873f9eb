"""Run the taxi tips pipeline on this machine: Beam's local runner, ML Metadata in SQLite.

Once (on demand), or with --watch until SIGTERM or Ctrl-C: a run for every new
span of data, on a serving skew alarm, and on a schedule. Prints one line per component (ran, cached or
skipped, seconds) and, at the end, the pushed version or why nothing was
pushed. The full TFX, Beam and TensorFlow logs go to <output-dir>/logs/run_local.log.
"""
import argparse
import dataclasses
import os
import pathlib
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # Keras 2, before TF loads
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from pipeline import config as pipeline_config  # noqa: E402
from pipeline import run_lock, triggers  # noqa: E402

EXIT_OK, EXIT_FAILED, EXIT_NO_DATA, EXIT_BUSY = 0, 1, 2, 3


def _flag_type(parse):
    """argparse prints an ArgumentTypeError's message, but hides a ValueError's."""
    def convert(text):
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return convert


def parse_args(argv):
    defaults = pipeline_config.PipelineConfig()
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data-dir", type=pathlib.Path, default=defaults.data_dir,
                        help="folder of span-N/data.csv files (make them with "
                             "`python data/make_spans.py`); env TAXI_DATA_DIR")
    parser.add_argument("--output-dir", type=pathlib.Path, default=defaults.output_dir,
                        help="where the metadata store, pipeline artifacts, serving "
                             "models and logs go; env TAXI_OUTPUT_DIR")
    parser.add_argument("--metadata", metavar="STORE", default=defaults.metadata_store,
                        help="ML Metadata store: a SQLite file, postgresql://user@host:port/"
                             "dbname, mysql://user@host:port/dbname or a ConnectionConfig "
                             "textproto; the password only from PGPASSWORD / ~/.pgpass or "
                             "MYSQL_PWD (default: $TAXI_METADATA, else "
                             "<output-dir>/metadata.sqlite; docs/metadata-store.md)")
    parser.add_argument("--training-window-spans", type=int,
                        default=defaults.training_window_spans,
                        help="train on this many latest spans")
    parser.add_argument("--train-steps", type=int, default=defaults.train_steps,
                        help="Trainer steps")
    parser.add_argument("--min-auc", type=float, default=defaults.min_auc,
                        help="the Evaluator blesses no model with a lower AUC")
    parser.add_argument("--min-accuracy", type=float, default=defaults.min_accuracy,
                        help="the Evaluator blesses no model with a lower accuracy")
    parser.add_argument("--max-auc-drop-vs-baseline", type=float,
                        default=defaults.max_auc_drop_vs_baseline,
                        help="bless no model whose AUC is lower than the serving "
                             "model's by more than this")
    parser.add_argument("--no-cache", action="store_true",
                        help="rerun every component even if its inputs are unchanged")
    parser.add_argument("--analyzer-cache", action="store_true",
                        default=defaults.analyzer_cache,
                        help="let Transform reuse TFT's analysis of spans it analyzed "
                             "before (pays off on big spans only)")
    parser.add_argument("--push-destination", metavar="URI",
                        type=_flag_type(pipeline_config.remote_push_destination),
                        default=defaults.push_destination,
                        help="push versions to this gs:// or s3:// model base path "
                             "instead of <output-dir>/serving_model/taxi_tips "
                             "(docs/remote-push.md)")
    parser.add_argument("--beam-arg", action="append", default=[], metavar="ARG",
                        dest="beam_args",
                        help="an argument for Beam, after the defaults (repeat it; "
                             "write --beam-arg=--flag=value), e.g. --beam-arg="
                             "--direct_running_mode=multi_processing --beam-arg="
                             "--direct_num_workers=2; runners in docs/beam.md")
    parser.add_argument("--wait", action="store_true",
                        help="if another run holds the output folder, wait for it "
                             "instead of exiting with status 3")
    infra = parser.add_argument_group("infra validation (a local model server on the candidate)")
    infra.add_argument("--infra-p99-target-ms", type=float,
                       default=defaults.infra_p99_target_ms,
                       help="push no model whose p99 latency in the load test is higher")
    infra.add_argument("--infra-load-rate", type=float, default=defaults.infra_load_rate,
                       help="requests per second in the load test")
    infra.add_argument("--infra-load-seconds", type=float,
                       default=defaults.infra_load_seconds,
                       help="how long the load test lasts")
    infra.add_argument("--no-infra-warmup", action="store_true",
                       help="push the model without TF Serving warmup requests")
    continuous = parser.add_argument_group("continuous training")
    continuous.add_argument("--watch", action="store_true",
                            help="keep running: a run for every new complete span "
                                 "folder (oldest first), and on the schedule, until "
                                 "SIGTERM or Ctrl-C")
    continuous.add_argument("--check-every", type=_flag_type(triggers.parse_duration),
                            default=defaults.check_every_seconds, metavar="DURATION",
                            help="with --watch: how often to look for new spans "
                                 "(seconds, or 30s, 5m, 1h)")
    continuous.add_argument("--retrain-on", type=_flag_type(triggers.parse_policy),
                            default=",".join(defaults.retrain_on), metavar="POLICIES",
                            help="what trains a model, comma-separated: new-span (every "
                                 "valid span), decay (the served model got worse on a new "
                                 "span), drift (a new span differs from the training "
                                 "data), schedule (only on --retrain-every), skew (a "
                                 "serving check of the served model raised an alarm: "
                                 "retrain on the newest data, once per alarm)")
    continuous.add_argument("--max-decay-auc-drop", type=float,
                            default=defaults.max_decay_auc_drop,
                            help="the served model has decayed on a new span when its "
                                 "AUC there is below --min-auc or more than this below "
                                 "its AUC at push time")
    continuous.add_argument("--retrain-every", type=_flag_type(triggers.parse_duration),
                            default=defaults.retrain_every_seconds, metavar="DURATION",
                            help="with --watch: also run on this schedule (e.g. 24h); "
                                 "off by default")
    continuous.add_argument("--request-logs", type=pathlib.Path, metavar="DIR",
                            default=defaults.request_logs,
                            help="with --watch: judge the model server's request logs in "
                                 "this folder as `python -m pipeline.monitor` does, once "
                                 "each --serving-window is over (for --retrain-on skew)")
    continuous.add_argument("--serving-window", type=_flag_type(triggers.parse_duration),
                            default=defaults.serving_window_seconds, metavar="DURATION",
                            help="with --request-logs: the time window requests are "
                                 "judged by (e.g. 1h)")
    continuous.add_argument("--serving-metrics-url", default=defaults.serving_metrics_url,
                            metavar="URL",
                            help="the model server's Prometheus page (its REST API is on "
                                 "the same port), e.g. http://localhost:8501/monitoring/"
                                 "prometheus/metrics: a pushed version becomes the canary "
                                 "as soon as the server loaded it, and with --watch every "
                                 "look makes one automatic release decision (promote or "
                                 "roll back the canary, as `python -m pipeline.release "
                                 "check`)")
    continuous.add_argument("--canary-min-requests", type=int,
                            default=defaults.canary_min_requests,
                            help="with --serving-metrics-url: requests the canary serves "
                                 "before it may be promoted automatically")
    args = parser.parse_args(argv)
    from metadata import connection
    try:
        connection.choose(args.metadata, pathlib.Path())  # refuses a password in the URL
    except connection.StoreError as error:
        parser.error(f"--metadata / ${connection.ENVIRONMENT_VARIABLE}: {error}")
    if args.serving_window <= 0:
        parser.error("--serving-window must be longer than 0s")
    for flag in ("infra_p99_target_ms", "infra_load_rate", "infra_load_seconds"):
        if getattr(args, flag) <= 0:
            parser.error(f"--{flag.replace('_', '-')} must be above 0")
    if args.push_destination:
        from pipeline.components import atomic_pusher  # imports TensorFlow
        try:
            atomic_pusher.require_file_system(args.push_destination)
        except ValueError as error:
            parser.error(str(error))
    if args.beam_args:
        from pipeline import beam_args
        problem = beam_args.problem_with(args.beam_args)
        if problem:
            parser.error(f"--beam-arg {' '.join(args.beam_args)}: {problem}")
    cfg = dataclasses.replace(
        defaults, data_dir=args.data_dir.resolve(), output_dir=args.output_dir.resolve(),
        metadata_store=args.metadata,
        training_window_spans=args.training_window_spans, train_steps=args.train_steps,
        min_auc=args.min_auc, min_accuracy=args.min_accuracy,
        max_auc_drop_vs_baseline=args.max_auc_drop_vs_baseline,
        max_decay_auc_drop=args.max_decay_auc_drop, enable_cache=not args.no_cache,
        analyzer_cache=args.analyzer_cache, retrain_on=tuple(args.retrain_on),
        check_every_seconds=args.check_every, retrain_every_seconds=args.retrain_every,
        request_logs=args.request_logs.resolve() if args.request_logs else None,
        serving_window_seconds=args.serving_window,
        infra_p99_target_ms=args.infra_p99_target_ms, infra_load_rate=args.infra_load_rate,
        infra_load_seconds=args.infra_load_seconds, infra_warmup=not args.no_infra_warmup,
        serving_metrics_url=args.serving_metrics_url,
        canary_min_requests=args.canary_min_requests,
        push_destination=args.push_destination,
        beam_pipeline_args=pipeline_config.PipelineConfig.beam_pipeline_args
        + tuple(args.beam_args))
    return cfg, args


def main(argv=None) -> int:
    cfg, args = parse_args(argv)
    out = sys.stdout
    # TFX itself is imported only when a run starts.
    from pipeline import progress, stopping

    stop = stopping.StopSignals().install()
    status = run_or_watch(cfg, args, out, stop)
    if cfg.log_path.parent.is_dir():
        progress.stderr_to_file(cfg.log_path)
    return status


def run_or_watch(cfg, args, out, stop) -> int:
    from metadata import connection
    from pipeline import watch

    try:
        if args.watch:
            return watch.watch(cfg, out, stop)
        on_disk = triggers.complete_spans(cfg.data_dir)
        if not on_disk:
            print(f"No data: no complete span-N folder with CSV files under {cfg.data_dir}.\n"
                  f"Create it with: python data/make_spans.py --out {cfg.data_dir}", file=out)
            return EXIT_NO_DATA
        trigger = watch.one_pass_trigger(cfg, on_disk)
        if trigger is None:
            print("No serving skew alarm to act on: no check of the served model raised "
                  "one since it was pushed and since the last run triggered by skew. "
                  "Nothing was run.", file=out)
            return EXIT_OK
        status = watch.run_under_lock(cfg, trigger, on_disk, out, stop, wait=args.wait)
        return stop.exit_status if stop.requested else status
    except run_lock.LockHeld as busy:
        what = "watcher" if busy.name == run_lock.WATCH_LOCK else "pipeline run"
        print(f"Another {what} is using {busy.where}: {run_lock.describe(busy.holder)}.\n"
              f"Nothing was run. Wait for it" +
              (", or pass --wait to queue behind it." if what != "watcher" else
               ", or stop it (SIGTERM) first."), file=out)
        return EXIT_BUSY
    except connection.StoreError as error:  # the server is down, refuses the password...
        print(f"Nothing was run: {error}", file=out)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
