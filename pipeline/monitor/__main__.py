"""Command line of the serving monitor: `python -m pipeline.monitor`.

Reads the model server's request logs, measures training-serving skew per
model version and time window, records the check in ML Metadata and writes
Prometheus gauges. Exit status: 0 no alarm, 1 an alarm, 2 a usage error or no
metadata store.
"""
import argparse
import datetime
import logging
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before TensorFlow loads

from pipeline import triggers  # noqa: E402  (no TensorFlow import)

EXIT_OK, EXIT_ALARM, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad flags, no request logs, or no metadata store: exit status 2."""


def parse_duration(text: str) -> int:
    """`90s`, `30m`, `1h`, `2d`, `1w` in seconds, as the watcher's flags read them."""
    try:
        return int(triggers.parse_duration(text))
    except ValueError as error:
        raise UsageError(str(error)) from None


def parse_time(text: str, now: float) -> int:
    """An ISO time (no zone: UTC), or a duration back from now (`24h`)."""
    try:
        return int(now - triggers.parse_duration(text))
    except ValueError:
        pass  # not a duration: an ISO time?
    try:
        moment = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{text!r} is neither an ISO time (2024-05-01T12:00) nor a "
                         f"duration back from now (24h)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return int(moment.timestamp())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.monitor",
        description="Training-serving skew from the model server's request logs. "
        "Exit status 0: no alarm, 1: skew or serving anomalies, 2: usage error or no store.")
    parser.add_argument("--request-logs", "--request_logs", required=True, type=pathlib.Path,
                        help="folder of PredictionLog TFRecord files (read recursively)")
    parser.add_argument("--since", help="ISO time (UTC if no zone) or a duration back from "
                        "now, e.g. 24h (default: where the last check of these logs stopped, "
                        "else the first record)")
    parser.add_argument("--until", help="ISO time or duration back from now (default: now)")
    parser.add_argument("--window", default="1h",
                        help="time window requests are grouped by (default %(default)s)")
    parser.add_argument("--format", choices=("text", "json", "html"), default="text")
    parser.add_argument("-o", "--output", type=pathlib.Path,
                        help="write the report to this file instead of stdout")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--metadata", metavar="STORE",
                       help="ML Metadata store: a SQLite file, postgresql://user@host:port/"
                       "dbname, mysql://user@host:port/dbname or a ConnectionConfig "
                       "textproto; password from PGPASSWORD / ~/.pgpass or MYSQL_PWD "
                       "(default: $TAXI_METADATA, else outputs/metadata.sqlite or "
                       "$TAXI_OUTPUT_DIR/metadata.sqlite)")
    where.add_argument("--metadata_path", "--metadata-path", type=pathlib.Path,
                       help="a SQLite ML Metadata file (as --metadata)")
    where.add_argument("--connection_config", "--connection-config", "--metadata_config",
                       "--metadata-config", type=pathlib.Path,
                       help="an ml_metadata.ConnectionConfig textproto (as --metadata)")
    parser.add_argument("--output-dir", "--output_dir", type=pathlib.Path,
                        help="pipeline output folder; the check's files go under its "
                        "monitoring/ (default: the SQLite metadata file's folder, else "
                        "outputs/ or $TAXI_OUTPUT_DIR)")
    parser.add_argument("--prometheus-file", "--prometheus_file", type=pathlib.Path,
                        help="gauges for a textfile collector (default: "
                        "<output-dir>/monitoring/serving_skew.prom)")
    parser.add_argument("--schema", type=pathlib.Path,
                        help="schema with skew comparators (default: the curated one)")
    return parser


def _open_store(args):
    from metadata import connection
    from pipeline import config

    try:
        if args.connection_config:
            store_config = connection.config_from_textproto(args.connection_config)
        elif args.metadata_path:
            store_config = connection.sqlite_config(args.metadata_path)
        else:
            store_config = connection.choose(args.metadata, config.PipelineConfig().metadata_path)
        if not connection.exists(store_config):
            raise UsageError(f"no metadata store at {connection.describe(store_config)}: run "
                             "the pipeline first, or pass --metadata")
        return connection.open_store(store_config), connection.describe(store_config)
    except connection.StoreError as error:
        raise UsageError(str(error)) from error


def _output_dir(args) -> pathlib.Path:
    from pipeline import config

    if args.output_dir:
        return args.output_dir
    if args.metadata_path:
        return args.metadata_path.resolve().parent
    from metadata import connection
    store_config = connection.choose(args.metadata, config.PipelineConfig().metadata_path)
    if args.metadata and store_config.HasField("sqlite"):
        return pathlib.Path(store_config.sqlite.filename_uri).resolve().parent
    return config.PipelineConfig().output_dir


def run(args) -> int:
    logs = args.request_logs.resolve()
    if not logs.is_dir():
        raise UsageError(f"no request log folder at {logs}")
    window_seconds = parse_duration(args.window)
    if window_seconds <= 0:
        raise UsageError("--window must be longer than 0 s")
    now = time.time()
    until = parse_time(args.until, now) if args.until else int(now)
    since = parse_time(args.since, now) if args.since else None
    if since is not None and since >= until:
        raise UsageError(f"--since ({args.since}) is not before --until")

    # TensorFlow's start-up notices (CUDA, cuDNN, oneDNN) are not for a CPU user.
    from serving.tensorflow_runtime import import_tensorflow
    import_tensorflow()
    import tensorflow_data_validation as tfdv
    from metadata import serving_checks
    from pipeline import config
    from pipeline.monitor import check, format_json, format_text, prometheus

    store, where = _open_store(args)
    if since is None:
        since = serving_checks.resume_point(store, str(logs))
    schema = tfdv.load_schema_text(str(args.schema or config.PipelineConfig().schema_file))
    output_dir = _output_dir(args)
    report = check.run_check(store, logs, since, until, window_seconds, schema, output_dir)
    report.metadata_store = where
    prometheus.write_metrics(report, args.prometheus_file or pathlib.Path(
        output_dir, "monitoring", prometheus.DEFAULT_FILE))
    if args.format == "html":
        from pipeline.monitor import format_html
        # Earlier windows of the judged versions, so a chart shows a trend.
        pushed_ids = sorted({w.pushed_model_id for w in report.windows if w.pushed_model_id})
        history = [skew for pushed_id in pushed_ids
                   for skew in serving_checks.checks_of_pushed_model(store, pushed_id)]
        text = format_html.to_html(report, history)
    else:
        text = format_json.dumps(report) if args.format == "json" else format_text.summary(report)
    if args.output:
        args.output.write_text(text + "\n")
    else:
        sys.stdout.write(text + "\n")
    return EXIT_ALARM if report.alarm else EXIT_OK


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="monitor: %(levelname)s: %(message)s")
    try:
        return run(args)
    except UsageError as error:
        print(f"monitor: error: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
