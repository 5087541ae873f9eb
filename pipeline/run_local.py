"""Run the taxi tips pipeline on this machine: Beam's local runner, ML Metadata in SQLite.

Prints one line per component (ran, cached or skipped, seconds) and, at the
end, the pushed version or why nothing was pushed. The full TFX, Beam and
TensorFlow logs go to <output-dir>/logs/run_local.log.
"""
import argparse
import contextlib
import dataclasses
import os
import pathlib
import re
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # Keras 2, before TF loads
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from pipeline import config as pipeline_config  # noqa: E402

EXIT_OK, EXIT_FAILED, EXIT_NO_DATA = 0, 1, 2


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
    parser.add_argument("--train-when", default=defaults.train_when, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return dataclasses.replace(
        defaults, data_dir=args.data_dir.resolve(), output_dir=args.output_dir.resolve(),
        training_window_spans=args.training_window_spans, train_steps=args.train_steps,
        min_auc=args.min_auc, min_accuracy=args.min_accuracy,
        max_auc_drop_vs_baseline=args.max_auc_drop_vs_baseline,
        enable_cache=not args.no_cache, train_when=args.train_when)


def spans_on_disk(data_dir: pathlib.Path) -> list[int]:
    pattern = re.compile(r"span-(\d+)$")
    return sorted(int(match.group(1)) for path in data_dir.glob("span-*")
                  if (match := pattern.match(path.name)) and any(path.glob("*.csv")))


class ProgressPrinter:
    """Turns TFX's log records into one line per component for people."""

    def __init__(self, out):
        self.out = out
        self.label = ""  # says which span a backfill run ingests
        self.node, self.started, self.status = None, 0.0, ""

    def handle(self, message: str):
        if match := re.match(r"Component (\S+) is running\.", message):
            self.node, self.started, self.status = match.group(1), time.time(), "resolved"
        elif message.startswith("A cached execution"):
            self.status = "cached"
        elif message.startswith("Going to run a new execution"):
            self.status = "ran"
        elif message.startswith("Skipping execution"):
            self.status = "skipped"
        elif re.match(r"Component (\S+) is finished\.", message):
            self.finish(self.status)

    def finish(self, status):
        if self.node is None:
            return
        seconds = time.time() - self.started
        print(f"  {self.node + self.label:<32} {status:<9} {seconds:7.1f}s",
              file=self.out, flush=True)
        self.node = None


@contextlib.contextmanager
def logs_to_file(log_path: pathlib.Path, progress: ProgressPrinter):
    """Send stdout/stderr (Python and C++) and absl logs to the log file."""
    import logging

    from absl import logging as absl_logging

    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = open(log_path, "a", buffering=1)
    sys.stdout.flush(), sys.stderr.flush()
    saved_fds = os.dup(1), os.dup(2)
    console = progress.out
    if console is sys.stdout:  # keep talking to the terminal
        progress.out = os.fdopen(os.dup(saved_fds[0]), "w", buffering=1)
    os.dup2(log_file.fileno(), 1)
    os.dup2(log_file.fileno(), 2)

    class Relay(logging.Handler):
        def emit(self, record):
            progress.handle(record.getMessage())

    relay = Relay()
    absl_logging.set_verbosity(absl_logging.INFO)
    logging.getLogger("absl").addHandler(relay)
    try:
        yield
    finally:
        logging.getLogger("absl").removeHandler(relay)
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        for fd in saved_fds:
            os.close(fd)
        if progress.out is not console:
            progress.out.close()
            progress.out = console
        log_file.close()


def run(cfg: pipeline_config.PipelineConfig, out) -> int:
    spans = spans_on_disk(cfg.data_dir)
    if not spans:
        print(f"No data: no span-N/*.csv under {cfg.data_dir}.\n"
              f"Create it with: python data/make_spans.py --out {cfg.data_dir}",
              file=out)
        return EXIT_NO_DATA

    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    window = spans[-cfg.training_window_spans:]
    print(f"Pipeline {pipeline_config.PIPELINE_NAME}: spans {spans[0]}..{spans[-1]} "
          f"on disk; training on the latest {cfg.training_window_spans} that pass "
          f"validation", file=out, flush=True)
    progress = ProgressPrinter(out)
    started = time.time()
    error = None
    with logs_to_file(cfg.log_path, progress):
        # TFX is imported here, so that its import-time warnings go to the log
        # and --help or a missing data folder do not wait for it.
        from tfx import v1 as tfx

        from pipeline import pipeline as taxi_pipeline
        from pipeline import run_summary
        try:
            ingested = run_summary.ingested_spans(cfg.metadata_path)
            for span in window[:-1]:
                if span not in ingested:
                    progress.label = f" (backfill span {span})"
                    tfx.orchestration.LocalDagRunner().run(
                        taxi_pipeline.ingestion_pipeline(cfg, span))
            progress.label = ""
            tfx.orchestration.LocalDagRunner().run(taxi_pipeline.create_pipeline(cfg))
        except Exception as exc:  # reported below, with the log file for details
            error = exc
            progress.finish("FAILED")
        try:
            summary = run_summary.summarize_latest_run(cfg.metadata_path)
        except Exception as exc:  # a summary that cannot be read is no reason to crash
            summary = run_summary.RunSummary()
            print(f"Could not summarize the run from ML Metadata: {exc}", file=progress.out)

    print(f"Finished in {time.time() - started:.1f}s.", file=out)
    if summary.trained_on_spans and error is None:
        print("Trained on spans " + ", ".join(map(str, summary.trained_on_spans)) + ".",
              file=out)
    if summary.evaluation() and error is None:
        print(summary.evaluation(), file=out)
    print(f"The run failed: {error}" if error is not None else summary.outcome(),
          file=out)
    print(f"Serving directory: {cfg.serving_model_dir}\n"
          f"Metadata store:    {cfg.metadata_path}\n"
          f"Full logs:         {cfg.log_path}", file=out)
    return EXIT_FAILED if error is not None else EXIT_OK


def main(argv=None) -> int:
    return run(parse_args(argv), sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
