"""Times continuous training as a user runs it: a watcher (`run_local.py
--watch`) is up, a span of data lands, and we wait for its outcome in ML
Metadata.

Two measurements, medians of several spans each, in one script on one machine:
- span landing -> its model pushed (policy new-span: every span trains);
- span landing -> span recorded without training (policy schedule: new spans
  are only measured): ingestion, validation, the decay and drift
  measurements, no Transform/Trainer/Evaluator.
Their ratio is the cost of a span that triggers no training, as a fraction of
a training run. A benchmark, not a test:
    python benchmarks/continuous_bench.py [--spans 3]
"""
import argparse
import os
import pathlib
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from benchmarks.pipeline_bench import machine_description, make_spans  # noqa: E402
from metadata import connection, runs  # noqa: E402

RESULTS = PROJECT_ROOT / "benchmarks" / "continuous_results.md"
FIRST_SPAN = 12  # the watcher starts on spans 1..12 (the window backfills 9..11)


def start_watcher(data_dir, output_dir, log, *flags) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "pipeline" / "run_local.py"), "--watch",
         "--check-every", "0.5", "--data-dir", str(data_dir), "--output-dir",
         str(output_dir), *flags], stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT)


def outcome_of(output_dir, span):
    path = output_dir / "metadata.sqlite"
    if not path.exists():
        return None
    try:
        store = connection.open_reader(connection.sqlite_config(path))
        for context in reversed(runs.all_runs(store)):
            properties = runs.run_properties(context)
            if properties.get(runs.SPAN) == span and properties.get(runs.TRIGGER) != "backfill" \
                    and properties.get(runs.OUTCOME) in runs.FINAL_OUTCOMES:
                return properties[runs.OUTCOME]
    except Exception:  # the writer holds SQLite's lock: look again
        return None
    return None


def wait_for_outcome(output_dir, span, watcher, timeout=1800) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (outcome := outcome_of(output_dir, span)) is not None:
            return outcome
        if watcher.poll() is not None:
            sys.exit(f"the watcher exited ({watcher.returncode}) before span {span} finished")
        time.sleep(0.2)
    sys.exit(f"span {span} did not finish in {timeout}s")


def land(data_dir, span, copy_of=None) -> float:
    """Lays out a span (written, then renamed into place); returns when it landed."""
    if copy_of is None:
        make_spans(data_dir, span, span)
    else:
        staging = data_dir / f".span-{span}.writing"
        shutil.copytree(data_dir / f"span-{copy_of}", staging)
        os.rename(staging, data_dir / f"span-{span}")
    return time.perf_counter()


def stop(watcher):
    watcher.send_signal(signal.SIGTERM)
    watcher.wait(600)


def measure(work_dir: pathlib.Path, spans: int) -> dict:
    data_dir, output_dir = work_dir / "data", work_dir / "outputs"
    make_spans(data_dir, 1, FIRST_SPAN)
    log = open(work_dir / "watcher.log", "w")
    timings = {"span landed -> model pushed (policy new-span)": [],
               "span landed -> measured, no training (policy schedule)": []}
    watcher = start_watcher(data_dir, output_dir, log)
    wait_for_outcome(output_dir, FIRST_SPAN, watcher)  # the cold start is not measured
    training_spans = range(FIRST_SPAN + 1, FIRST_SPAN + 1 + spans)
    for span in training_spans:
        landed = land(data_dir, span)
        outcome = wait_for_outcome(output_dir, span, watcher)
        timings["span landed -> model pushed (policy new-span)"].append(
            (time.perf_counter() - landed, outcome))
    stop(watcher)
    # Policy schedule (and no schedule): new spans are measured, never trained on.
    watcher = start_watcher(data_dir, output_dir, log, "--retrain-on", "schedule")
    first_copy = training_spans[-1] + 1
    for offset, span in enumerate(range(first_copy, first_copy + spans)):
        landed = land(data_dir, span, copy_of=FIRST_SPAN - offset)
        outcome = wait_for_outcome(output_dir, span, watcher)
        timings["span landed -> measured, no training (policy schedule)"].append(
            (time.perf_counter() - landed, outcome))
    stop(watcher)
    log.close()
    return timings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=3, help="spans measured per policy")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    work_dir = pathlib.Path(tempfile.mkdtemp(prefix="continuous-bench-"))
    try:
        timings = measure(work_dir, args.spans)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    medians = {key: statistics.median(seconds for seconds, _ in values)
               for key, values in timings.items()}
    training = next(iter(medians.values()))
    rows = [f"| {key} | {medians[key]:.1f} | {medians[key] / training:.2f} | "
            f"{', '.join(f'{s:.1f} ({o})' for s, o in values)} |"
            for key, values in timings.items()]
    table = "\n".join(["| measurement | median seconds | ratio to a training span | "
                       "every span (s, outcome) |", "|---|---:|---:|---|", *rows])
    report = (f"# Continuous training timings\n\n"
              f"Measured {time.strftime('%Y-%m-%d')} with `python benchmarks/continuous_bench.py "
              f"--spans {args.spans}` on {machine_description()}.\n"
              f"A watcher (`run_local.py --watch --check-every 0.5`) is up on quarterly spans "
              f"1..{FIRST_SPAN} of the full taxi data (its cold start is not measured); each "
              f"new span is written then renamed into the data folder, and the clock stops "
              f"when ML Metadata records the span's outcome. Training window 4 spans, "
              f"1,000 training steps (the defaults). The no-training spans are copies of "
              f"earlier quarters under new span numbers, so nothing is cached.\n\n{table}\n")
    print(report)
    if not args.no_write:
        # Keep the hand-written findings when the table is measured again.
        old = RESULTS.read_text() if RESULTS.exists() else ""
        findings = old[old.index("\n## Findings"):] if "\n## Findings" in old else ""
        RESULTS.write_text(report + findings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
