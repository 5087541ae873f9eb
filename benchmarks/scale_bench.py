"""Seconds and peak memory of each pipeline component against the number of rows,
for Beam's in-memory DirectRunner and its multi-process mode (2 workers).

One training run per measurement: a new store and a window of 4 synthetic spans
(13..16, `data/make_spans.py --synthetic-rows N`, seed 0) adding up to N rows;
`run_local.py` backfills spans 13..15 and trains on span 16, with the cache off.
Seconds per component come from ML Metadata (each execution's creation to its
last update; the backfill runs' ExampleGen and statistics are added up). Peak
memory is the resident memory of the whole process tree (runner, Beam workers,
model server) sampled every 0.2 s, attributed to the component executing then.
Every measurement is kept in <work-dir>/measurements.json; the results file is
built from all of them (medians per rows and runner), so sizes can be run apart:
    python benchmarks/scale_bench.py --rows 15000 --repetitions 3
    python benchmarks/scale_bench.py --rows 150000 1000000 --timeout 2100
A benchmark, not a test.
"""
import argparse
import importlib.util
import json
import os
import pathlib
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time

import psutil

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from pipeline import config  # noqa: E402  (no TensorFlow: only names and defaults)

RESULTS = PROJECT_ROOT / "benchmarks" / "scale_results.md"
FINDINGS = "## Findings"
DEFAULT_WORK_DIR = pathlib.Path("/tmp/scale_bench")
WINDOW = (13, 16)  # the spans of one training window (the data's last 4 quarters)
SAMPLE_SECONDS = 0.2
RUNNERS = {
    "in-memory": [],  # the pipeline's default, BEAM_PIPELINE_ARGS
    "multi-process": ["--beam-arg=--direct_running_mode=multi_processing",
                      "--beam-arg=--direct_num_workers=2"],
}
# The Evaluator and InfraValidator bars are off so every run goes through to the
# Pusher whatever the synthetic data's AUC, and a busy machine's latency.
RUN_FLAGS = ["--no-cache", "--training-window-spans", "4", "--min-auc", "0",
             "--min-accuracy", "0", "--max-auc-drop-vs-baseline", "1.0",
             "--infra-p99-target-ms", "5000"]
# Components in data-flow order; resolvers take milliseconds and are left out.
COMPONENTS = ("CsvExampleGen", "StatisticsGen", "SchemaGen", "ImportSchemaGen",
              "ExampleValidator", "ValidationGate", "DecayCheck", "DriftCheck",
              "RetrainDecision", "Transform", "Trainer", "Evaluator", "InfraValidator",
              "Pusher", "ReleaseCanary")
WHOLE_RUN = "whole run (process)"
# Components that run once per span (backfills included) and once on the window:
# what a component read is what its rows per second count.
PER_SPAN = ("CsvExampleGen", "StatisticsGen")
READS_ROWS = (*PER_SPAN, "Transform", "Evaluator", WHOLE_RUN)


# --- measuring ---------------------------------------------------------------------------

class TreeMemorySampler(threading.Thread):
    """Resident memory of a process and all its descendants, every SAMPLE_SECONDS.
    RSS counts pages shared between processes (the Beam workers' copies of the
    same libraries) once per process: an upper bound on what the tree takes."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        # (time.time(), bytes, CPU seconds the tree used since it started)
        self.samples: list[tuple[float, int, float]] = []
        self.stopped = threading.Event()
        # CPU seconds by process, as last seen: a worker that ended keeps its share.
        self.cpu_seconds: dict[int, float] = {}

    def tree_usage(self) -> tuple[int, float]:
        total = 0
        try:
            processes = [self.root] + self.root.children(recursive=True)
        except psutil.NoSuchProcess:
            return 0, 0.0
        for process in processes:
            try:
                with process.oneshot():
                    total += process.memory_info().rss
                    cpu = process.cpu_times()
                    self.cpu_seconds[process.pid] = cpu.user + cpu.system
            except psutil.NoSuchProcess:
                pass
        return total, sum(self.cpu_seconds.values())

    def run(self):
        while not self.stopped.wait(SAMPLE_SECONDS):
            rss, cpu = self.tree_usage()
            if rss:
                self.samples.append((time.time(), rss, cpu))


def executions_by_component(output_dir: pathlib.Path) -> list[dict]:
    """Every execution of the store: its node id, state and times (seconds since
    the epoch; an unfinished one ends at its last update)."""
    from metadata import connection

    store = connection.open_reader(connection.sqlite_config(output_dir / config.METADATA_FILE))
    node_types = {t.id for t in store.get_context_types() if t.name == "node"}
    found = []
    for execution in store.get_executions():
        nodes = [c.name for c in store.get_contexts_by_execution(execution.id)
                 if c.type_id in node_types]
        found.append({
            "component": nodes[0].split(".", 1)[-1] if nodes else "?",
            "state": execution.last_known_state,
            "start": execution.create_time_since_epoch / 1000,
            "end": execution.last_update_time_since_epoch / 1000})
    return found


def span_rows(total_rows: int) -> dict[int, int]:
    """Rows of each span of the window, as make_spans.py shares them out."""
    spec = importlib.util.spec_from_file_location(
        "make_spans", PROJECT_ROOT / "data" / "make_spans.py")
    make_spans = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_spans)
    _, by_span = make_spans.read_rows_by_span(make_spans.tfx_taxi_csv())
    window = range(WINDOW[0], WINDOW[1] + 1)
    return make_spans.rows_per_span({span: len(by_span[span]) for span in window}, total_rows)


def per_component(executions: list[dict], samples, rows_by_span: dict[int, int]) -> dict:
    """Seconds (summed over the run's executions of a component) and peak tree
    memory while one of them ran. A run stopped by --timeout leaves its running
    component at its last update (its start): it is reported up to the last
    sample instead, and marked unfinished. `rows` and `rows_seconds`: the rows
    its finished executions read (a backfill's ExampleGen one span, Transform
    the window), and the seconds those took."""
    from ml_metadata.proto import metadata_store_pb2

    complete = metadata_store_pb2.Execution.COMPLETE
    unfinished = (metadata_store_pb2.Execution.NEW, metadata_store_pb2.Execution.RUNNING)
    last_sample = samples[-1][0] if samples else 0
    result = {}
    runs_so_far: dict[str, int] = {}
    for execution in sorted(executions, key=lambda e: e["start"]):
        name = execution["component"]
        if name not in COMPONENTS:
            continue
        done = execution["state"] == complete
        end = (max(execution["end"], last_sample) if execution["state"] in unfinished
               else execution["end"])
        entry = result.setdefault(name, {"seconds": 0.0, "peak_bytes": 0, "complete": True,
                                         "rows": 0, "rows_seconds": 0.0})
        entry["seconds"] += end - execution["start"]
        entry["complete"] &= done
        # The backfills run spans 13, 14, 15 in order, then the training run 16.
        span = WINDOW[0] + runs_so_far.get(name, 0)
        runs_so_far[name] = runs_so_far.get(name, 0) + 1
        if done:
            entry["rows"] += (rows_by_span.get(span, 0) if name in PER_SPAN
                              else sum(rows_by_span.values()))
            entry["rows_seconds"] += end - execution["start"]
        during = [sample for sample in samples if execution["start"] <= sample[0] <= end]
        if not during and samples:  # shorter than a sample interval: the nearest one
            during = [min(samples, key=lambda sample: abs(sample[0] - execution["start"]))]
        entry["peak_bytes"] = max([entry["peak_bytes"], *(sample[1] for sample in during)])
        if samples and len(samples[0]) > 2:  # CPU seconds: recorded since the 1M runs
            before = [sample for sample in samples if sample[0] <= execution["start"]]
            start_cpu = before[-1][2] if before else 0.0
            entry["cpu_seconds"] = entry.get("cpu_seconds", 0.0) + max(
                0.0, during[-1][2] - start_cpu)
    return result


def make_window(data_dir: pathlib.Path, rows: int):
    if (data_dir / f"span-{WINDOW[1]}" / "data.csv").exists():
        return
    subprocess.run([sys.executable, str(PROJECT_ROOT / "data" / "make_spans.py"),
                    "--out", str(data_dir), "--first-span", str(WINDOW[0]),
                    "--through-span", str(WINDOW[1]), "--synthetic-rows", str(rows),
                    "--seed", "0"], check=True, capture_output=True)


def measure(work_dir: pathlib.Path, rows: int, runner: str, repetition: int,
            timeout: float) -> dict:
    data_dir = work_dir / f"data-{rows}"
    make_window(data_dir, rows)
    output_dir = work_dir / f"out-{rows}-{runner}-{repetition}"
    subprocess.run(["rm", "-rf", str(output_dir)], check=True)
    temp_dir = output_dir / "tmp"  # TFX's and Beam's temporary files, removed with it
    temp_dir.mkdir(parents=True)
    env = {**os.environ, "TMPDIR": str(temp_dir), "TF_USE_LEGACY_KERAS": "1",
           "PYTHONPATH": str(PROJECT_ROOT)}  # Beam's worker processes import models/
    command = [sys.executable, str(PROJECT_ROOT / "pipeline" / "run_local.py"),
               "--data-dir", str(data_dir), "--output-dir", str(output_dir),
               *RUN_FLAGS, *RUNNERS[runner]]
    started = time.time()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env, cwd=PROJECT_ROOT, start_new_session=True)
    sampler = TreeMemorySampler(process.pid)
    sampler.start()
    try:
        stdout, _ = process.communicate(timeout=timeout)
        finished = True
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # its own session: runner, workers, server
        stdout, _ = process.communicate()
        finished = False
    seconds = time.time() - started
    sampler.stopped.set()
    sampler.join()
    executions = executions_by_component(output_dir)
    components = per_component(executions, sampler.samples, span_rows(rows))
    measurement = {
        "rows": rows, "runner": runner, "repetition": repetition, "date": time.strftime(
            "%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "exit_status": process.returncode if finished else None, "finished": finished,
        "load_average_before": os.getloadavg()[0],
        "components": components,
        "whole_run": {"seconds": seconds,
                      "peak_bytes": max((sample[1] for sample in sampler.samples), default=0),
                      "cpu_seconds": sampler.samples[-1][2] if sampler.samples else 0.0},
        # The raw material, to attribute the samples differently later.
        "executions": executions, "samples": sampler.samples}
    print(f"{rows} rows, {runner} #{repetition}: {seconds:.0f}s, exit "
          f"{measurement['exit_status']}, peak "
          f"{measurement['whole_run']['peak_bytes'] / 2**20:.0f} MiB", flush=True)
    for name in COMPONENTS:
        if name in components:
            c = components[name]
            print(f"  {name:17} {c['seconds']:8.1f}s {c['peak_bytes'] / 2**20:8.0f} MiB"
                  f"{'' if c['complete'] else '  (unfinished)'}", flush=True)
    if not finished or process.returncode != 0:
        print(stdout[-3000:], flush=True)
    subprocess.run(["rm", "-rf", str(output_dir)], check=True)
    return measurement


def load(path: pathlib.Path) -> list[dict]:
    return json.loads(path.read_text()) if path.exists() else []


def save(path: pathlib.Path, measurements: list[dict]):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(measurements, indent=1))


# --- the report --------------------------------------------------------------------------

def machine_description() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "unknown CPU")
    memory_kb = int(next(line for line in open("/proc/meminfo")
                         if line.startswith("MemTotal")).split()[1])
    return (f"{os.cpu_count()} cores, {cpu}, {memory_kb / 2**20:.0f} GiB RAM, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}")


def summarize(measurements: list[dict]) -> dict:
    """(rows, runner) -> component -> median seconds, median peak bytes, runs, complete."""
    grouped: dict = {}
    for m in measurements:
        cases = grouped.setdefault((m["rows"], m["runner"]), {})
        entries = (per_component(m["executions"], m["samples"], span_rows(m["rows"]))
                   if "samples" in m else dict(m["components"]))
        complete = bool(m["finished"] and m["exit_status"] == 0)
        entries[WHOLE_RUN] = {**m["whole_run"], "complete": complete}
        for name, entry in entries.items():
            if "rows" not in entry:  # the first runs kept no samples: all finished
                entry = {**entry, "rows": m["rows"] if entry["complete"] else 0,
                         "rows_seconds": entry["seconds"]}
            cases.setdefault(name, []).append(entry)
    return {case: {name: {"seconds": statistics.median(e["seconds"] for e in entries),
                          "rows_per_second": statistics.median(
                              e["rows"] / e["rows_seconds"] if e["rows"] else 0
                              for e in entries),
                          "peak_bytes": statistics.median(e["peak_bytes"] for e in entries),
                          # From the runs that recorded it (the sampler did from 17:28 on).
                          "cpu_seconds": statistics.median(
                              [e["cpu_seconds"] for e in entries if "cpu_seconds" in e] or [0])
                          if any("cpu_seconds" in e for e in entries) else None,
                          "runs": len(entries),
                          "complete": all(e["complete"] for e in entries)}
                   for name, entries in components.items()}
            for case, components in grouped.items()}


def _cell(entry, value: str) -> str:
    if entry is None:
        return "-"
    return value + ("" if entry["complete"] else " (unfinished)")


def tables(summary: dict) -> list[str]:
    cases = sorted(summary, key=lambda case: (case[0], list(RUNNERS).index(case[1])))
    header = "| component | " + " | ".join(
        f"{rows:,} rows {runner} ({summary[(rows, runner)][WHOLE_RUN]['runs']} run"
        f"{'s' if summary[(rows, runner)][WHOLE_RUN]['runs'] > 1 else ''})"
        for rows, runner in cases)
    rule = "|---|" + "---:|" * len(cases)
    names = [*COMPONENTS, WHOLE_RUN]
    lines = []
    # Components of a second or less read no data to speak of: rows per second
    # would be noise, and a few of them ran between two memory samples.
    data_components = [name for name in names if any(
        summary[case].get(name, {}).get("seconds", 0) > 1 for case in cases)]
    for title, value, shown in (
            ("Seconds (median)", lambda e, rows: f"{e['seconds']:.1f}", names),
            ("CPU seconds of the process tree (user + system; recorded from 17:28 on: the "
             "second runs at 15,000 and 150,000 rows, and the 1M runs)",
             lambda e, rows: f"{e['cpu_seconds']:.1f}" if e["cpu_seconds"] is not None
             else "-", data_components),
            ("Rows per second (rows a component's finished executions read / their "
             "seconds; the same at every size = linear)",
             lambda e, rows: f"{e['rows_per_second']:,.0f}" if e["rows_per_second"] else "-",
             [name for name in READS_ROWS if name in data_components]),
            ("Peak memory of the process tree, MiB (median of the runs' peaks)",
             lambda e, rows: f"{e['peak_bytes'] / 2**20:,.0f}" if e["peak_bytes"] else "-",
             data_components)):
        lines += [f"### {title}", "", header + " |", rule]
        for name in shown:
            if not any(name in summary[case] for case in cases):
                continue
            cells = [_cell(summary[case].get(name), value(summary[case][name], case[0]))
                     if name in summary[case] else "-" for case in cases]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def report(measurements: list[dict]) -> str:
    dates = sorted(m["date"] for m in measurements)
    loads = [m["load_average_before"] for m in measurements]
    return "\n".join([
        "# Pipeline components against rows: in-memory and multi-process DirectRunner",
        "",
        f"- Dates: {dates[0]} .. {dates[-1]}" if dates else "- no measurements",
        f"- Machine: {machine_description()}; shared with other work while these ran "
        f"(1-minute load average before a run: {min(loads):.1f} .. {max(loads):.1f}), so "
        "times are upper bounds of a quiet machine's",
        "- Command: `python benchmarks/scale_bench.py --rows N ...` (one run per rows and "
        "runner, a second where there was time; the column headers say how many: medians)",
        f"- Data: spans {WINDOW[0]}..{WINDOW[1]} of `data/make_spans.py --synthetic-rows N "
        "--seed 0` (each quarter's real trips resampled with jitter, N rows in all): one "
        "training window. One training run on a new store with the cache off "
        "(`run_local.py " + " ".join(RUN_FLAGS) + "`): spans 13..15 backfilled "
        "(ExampleGen, StatisticsGen, ExampleValidator and the gate each), span 16 through "
        "the whole pipeline; Transform, Trainer and Evaluator read the whole window. "
        "1,000 training steps at every size",
        "- Runners: in-memory = the pipeline's defaults (`"
        + " ".join(config.BEAM_PIPELINE_ARGS).replace(str(PROJECT_ROOT), "<project>") + "`);"
        f" multi-process = the same plus `{' '.join(RUNNERS['multi-process'])}`",
        "- Seconds: from ML Metadata, each execution's creation to its last update, added "
        "up over the backfill runs. Whole run: the `run_local.py` process, start-up "
        "included. Peak memory: RSS of the whole process tree (runner, Beam workers, the "
        f"InfraValidator's model server) every {SAMPLE_SECONDS} s, the highest while the "
        "component executed; RSS counts shared pages once per process",
        "",
        *tables(summarize(measurements))])


def write_results(text: str):
    # A hand-written "## Findings" section survives a re-run; only the numbers change.
    previous = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    findings = previous[previous.find(FINDINGS):] if FINDINGS in previous else ""
    RESULTS.write_text(text + ("\n" + findings if findings else ""), encoding="utf-8")


def _timeout(timeout: float, stop_at: str | None) -> float:
    if not stop_at:
        return timeout
    hours, minutes = map(int, stop_at.split(":"))
    now = time.gmtime()
    left = (hours * 3600 + minutes * 60) - (now.tm_hour * 3600 + now.tm_min * 60 + now.tm_sec)
    return max(1.0, min(timeout, left))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[15000, 150000, 1000000])
    parser.add_argument("--runners", nargs="+", choices=list(RUNNERS), default=list(RUNNERS))
    parser.add_argument("--repetitions", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=4 * 3600,
                        help="seconds before a run is stopped; its finished components "
                             "are kept, the running one marked unfinished")
    parser.add_argument("--stop-at", metavar="HH:MM",
                        help="UTC time of day by which a run is stopped (as --timeout), "
                             "to fit the benchmark into a window")
    parser.add_argument("--work-dir", type=pathlib.Path, default=DEFAULT_WORK_DIR)
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the results file from the measurements kept")
    parser.add_argument("--no-write", action="store_true", help="do not touch the results file")
    args = parser.parse_args(argv)

    store = args.work_dir / "measurements.json"
    measurements = load(store)
    if not args.report_only:
        for rows in args.rows:
            for repetition in range(args.repetitions):
                for runner in args.runners:
                    measurements.append(measure(args.work_dir, rows, runner, repetition,
                                                _timeout(args.timeout, args.stop_at)))
                    save(store, measurements)
                    if not args.no_write:
                        write_results(report(measurements))
    text = report(measurements)
    if not args.no_write:
        write_results(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
