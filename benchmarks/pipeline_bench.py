"""Times the whole pipeline as a user runs it: first run on a new store, a rerun
with nothing new (all cached), and a run after one new span arrived.

Each repetition starts from an empty output folder; the script prints every
timing, then the medians and their ratios to the first run, and writes the
table to benchmarks/pipeline_results.md. A benchmark, not a test:
    python benchmarks/pipeline_bench.py [--repetitions 3]
"""
import argparse
import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = PROJECT_ROOT / "benchmarks" / "pipeline_results.md"
LAST_SPAN = 16  # the data set's last quarter


def make_spans(data_dir, first, last):
    subprocess.run([sys.executable, str(PROJECT_ROOT / "data" / "make_spans.py"),
                    "--out", str(data_dir), "--first-span", str(first),
                    "--through-span", str(last)], check=True, capture_output=True)


def timed_run(data_dir, output_dir) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "pipeline" / "run_local.py"),
         "--data-dir", str(data_dir), "--output-dir", str(output_dir)],
        capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"pipeline failed:\n{result.stdout}\n{result.stderr}")
    print(result.stdout, flush=True)
    return seconds


def one_repetition(work_dir: pathlib.Path) -> dict:
    data_dir, output_dir = work_dir / "data", work_dir / "outputs"
    make_spans(data_dir, 1, LAST_SPAN - 1)
    timings = {"first run (new store, backfill + train)": timed_run(data_dir, output_dir),
               "rerun, nothing new (all cached)": timed_run(data_dir, output_dir)}
    make_spans(data_dir, LAST_SPAN, LAST_SPAN)
    timings["run after one new span"] = timed_run(data_dir, output_dir)
    return timings


def machine_description() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        memory_kb = int(next(l for l in open("/proc/meminfo") if l.startswith("MemTotal"))
                        .split()[1])
    except (OSError, StopIteration, ValueError):
        memory_kb = 0
    return (f"{os.cpu_count()} cores, {cpu}, {memory_kb / 2**20:.0f} GiB RAM, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    runs = []
    for repetition in range(args.repetitions):
        work_dir = pathlib.Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
        try:
            timings = one_repetition(work_dir)
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
        print(f"repetition {repetition + 1}: " +
              ", ".join(f"{k}: {v:.1f}s" for k, v in timings.items()), flush=True)
        runs.append(timings)

    first_key = next(iter(runs[0]))
    first_median = statistics.median(r[first_key] for r in runs)
    rows = []
    for key in runs[0]:
        values = [r[key] for r in runs]
        median = statistics.median(values)
        rows.append(f"| {key} | {median:.1f} | {median / first_median:.2f} | "
                    f"{', '.join(f'{v:.1f}' for v in values)} |")
    table = "\n".join(
        ["| run | median seconds | ratio to first run | all runs (s) |",
         "|---|---:|---:|---|", *rows])
    report = (f"# Pipeline timings\n\n"
              f"Measured {time.strftime('%Y-%m-%d')} with `python benchmarks/pipeline_bench.py "
              f"--repetitions {args.repetitions}` on {machine_description()}.\n"
              f"Data: the taxi CSV of the tfx wheel as 16 quarterly spans; spans 1..15 "
              f"at first, training window of 4 spans, then span 16 arrives. Each "
              f"repetition starts from an empty store; times are whole `run_local.py` "
              f"processes (Python and TFX start-up included).\n\n{table}\n")
    print(report)
    if not args.no_write:
        RESULTS.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
