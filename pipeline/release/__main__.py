"""`python -m pipeline.release promote | rollback | status | check`: the stable and
canary labels of the served model, by hand or by one automatic decision.

Exit status 0: done (or nothing to do yet); 1: refused, with the reason
(nothing to roll back to, no canary, the server cannot be read); 2: usage.
"""
import argparse
import dataclasses
import os
import pathlib
import sys

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
DEFAULT_METRICS_URL = "http://localhost:8501/monitoring/prometheus/metrics"


def _parser(defaults) -> argparse.ArgumentParser:
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument("--output-dir", type=pathlib.Path, default=argparse.SUPPRESS,
                       help=f"the pipeline's output folder: serving config, serving "
                            f"models, metadata store (default {defaults.output_dir}; "
                            "env TAXI_OUTPUT_DIR)")
    flags.add_argument("--metadata", metavar="STORE", default=argparse.SUPPRESS,
                       help="ML Metadata store: a SQLite file, postgresql://user@host:port/"
                            "dbname, mysql://user@host:port/dbname or a ConnectionConfig "
                            "textproto; password from PGPASSWORD / ~/.pgpass or MYSQL_PWD "
                            "(default: $TAXI_METADATA, else <output-dir>/metadata.sqlite)")
    flags.add_argument("--serving-metrics-url", default=argparse.SUPPRESS,
                       help="the model server's Prometheus page; its REST API is on the "
                            f"same port (default {DEFAULT_METRICS_URL})")
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.release", parents=[flags],
        description="Staged rollout of the pushed model: which version clients get "
                    "on /labels/stable and /labels/canary.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("status", parents=[flags],
                        help="stable and canary versions, since when and why")
    for name, text in (("promote", "make the canary the stable version"),
                       ("rollback", "send the canary back; if there is none, stable "
                                    "back to the previous good version")):
        command = commands.add_parser(name, parents=[flags], help=text, description=text)
        command.add_argument("--reason", default="by hand",
                             help="why, recorded in ML Metadata (default: %(default)s)")
    check = commands.add_parser(
        "check", parents=[flags],
        help="one automatic decision: label a loaded new version as canary, promote a "
             "canary within bounds, roll back one that broke them")
    check.add_argument("--min-requests", type=int, default=defaults.canary_min_requests)
    check.add_argument("--max-error-rate", type=float, default=defaults.canary_max_error_rate)
    check.add_argument("--max-p99-ms", type=float, default=defaults.canary_max_p99_ms)
    check.add_argument("--versions-kept", type=int, default=defaults.versions_kept,
                       help="version folders kept besides the labelled and loaded ones")
    return parser


def main(argv=None) -> int:
    from pipeline import config as pipeline_config

    defaults = pipeline_config.PipelineConfig()
    try:
        args = _parser(defaults).parse_args(argv)
    except SystemExit as exit_:
        return EXIT_USAGE if exit_.code else EXIT_OK
    output_dir = getattr(args, "output_dir", defaults.output_dir)
    cfg = dataclasses.replace(defaults, output_dir=output_dir.resolve(),
                              metadata_store=getattr(args, "metadata", None))
    if args.command == "check":
        cfg = dataclasses.replace(
            cfg, canary_min_requests=args.min_requests,
            canary_max_error_rate=args.max_error_rate, canary_max_p99_ms=args.max_p99_ms,
            versions_kept=args.versions_kept)
    metrics_url = getattr(args, "serving_metrics_url",
                          defaults.serving_metrics_url or DEFAULT_METRICS_URL)

    from metadata import connection
    from pipeline.release import actions, automatic, policy, serving_config, status

    try:
        store = connection.open_store(cfg.metadata_connection)
        release = actions.Release(cfg, store, metrics_url)
        if args.command == "status":
            text = status.describe(release)
        elif args.command == "promote":
            text = actions.promote(release, args.reason)
        elif args.command == "rollback":
            text = actions.rollback(release, args.reason)
        else:
            text = automatic.check(release, policy.Bounds.from_config(cfg)).text
        if args.command in ("promote", "rollback"):
            tidied = actions.tidy(release)
            text += f"\n{tidied}" if tidied else ""
    except (actions.Refused, serving_config.ServingConfigError, connection.StoreError) as error:
        print(f"release: {error}", file=sys.stderr)
        return EXIT_REFUSED
    print(text)
    return EXIT_OK


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
