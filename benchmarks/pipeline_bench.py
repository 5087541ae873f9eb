"""Times the whole pipeline as a user runs it, against TFX's own Chicago taxi
native-Keras example run in the same invocation as the baseline.

Each repetition runs the TFX example (benchmarks/tfx_taxi_example.py; with our runner
settings, then again with all of our Beam arguments) and our cases, alternating which
goes first, each from an empty output folder:
  cold       new store, spans 1..16 on disk
  rerun      the same folder again, nothing new (checked: nothing re-executed or pushed)
  no-train   then span 17, a copy of span 16's rows (the data ends at 16), arrives with
             `--retrain-on decay`; the served model has not decayed on it
  new span   in a new folder, after an untimed set-up run on spans 1..15, span 16
             arrives (default policy: it trains)
The script prints every timing, then medians, ratios and AUC/accuracy, and rewrites
the generated part of benchmarks/pipeline_results.md (a "## Findings" section stays).
A benchmark, not a test:
    python benchmarks/pipeline_bench.py [--repetitions 3] [--only ours|tfx] [--no-write]
"""
import argparse
import dataclasses
import json
import os
import pathlib
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from pipeline import config  # noqa: E402  (no TensorFlow: only names and defaults)

RESULTS = PROJECT_ROOT / "benchmarks" / "pipeline_results.md"
TFX_EXAMPLE = PROJECT_ROOT / "benchmarks" / "tfx_taxi_example.py"
FINDINGS = "## Findings"
LAST_SPAN = 16  # the data set's last quarter

TFX = "TFX taxi example (all 15,002 trips, new store)"
TFX_OUR_BEAM = "TFX taxi example with our Beam arguments"
COLD = "ours, cold: new store, spans 1..16 on disk"
RERUN = "ours, rerun with nothing new"
NO_TRAIN = (f"ours, span {LAST_SPAN + 1} (span {LAST_SPAN}'s rows again) arrives, "
            "no training (`--retrain-on decay`)")
NEW_SPAN = f"ours, span {LAST_SPAN} arrives after spans 1..{LAST_SPAN - 1} (trains)"
CASES = (TFX, TFX_OUR_BEAM, COLD, RERUN, NO_TRAIN, NEW_SPAN)
# The targets: (what the ratio is to, at most this ratio) or seconds.
RATIO_TO = {TFX_OUR_BEAM: TFX, COLD: TFX, RERUN: COLD, NO_TRAIN: COLD, NEW_SPAN: COLD}
TARGETS = {COLD: ("ratio", 1.0), RERUN: ("seconds", 10.0), NO_TRAIN: ("seconds", 15.0),
           NEW_SPAN: ("ratio", 0.4)}


@dataclasses.dataclass
class Run:
    seconds: float
    auc: float | None = None
    accuracy: float | None = None
    notes: list = dataclasses.field(default_factory=list)


# --- running -----------------------------------------------------------------------------

def subprocess_env(temp_dir: pathlib.Path) -> dict:
    # TFX leaves a ~49 MB copy of itself in a temp folder per Beam component: keep
    # those inside the repetition's folder so they are removed with it.
    temp_dir.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "TMPDIR": str(temp_dir), "TF_USE_LEGACY_KERAS": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT),
                                                        os.environ.get("PYTHONPATH")]))}


def timed(command, env) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {shlex.join(map(str, command))}\n"
                 f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return seconds, result.stdout


def run_tfx_example(work_dir: pathlib.Path, *flags) -> Run:
    seconds, stdout = timed([sys.executable, str(TFX_EXAMPLE), *flags],
                            subprocess_env(work_dir / "tmp"))
    # setup.py's output for the module-file wheel goes to stdout too; ours is the last line.
    result = json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])
    metrics = result["metrics"]
    run = Run(seconds, metrics.get("auc"), metrics.get("binary_accuracy"))
    if "auc" not in metrics:
        run.notes.append("its Evaluator computes no AUC (its EvalConfig asks only for "
                         "BinaryAccuracy)")
    if not result["pushed"]:
        run.notes.append("nothing pushed")
    print(f"  TFX example {shlex.join(flags)}: {seconds:.1f}s, Evaluator {metrics}, "
          f"pushed: {result['pushed']}",
          flush=True)
    return run


def make_spans(data_dir, first, last):
    subprocess.run([sys.executable, str(PROJECT_ROOT / "data" / "make_spans.py"),
                    "--out", str(data_dir), "--first-span", str(first),
                    "--through-span", str(last)], check=True, capture_output=True)


def run_ours(case, data_dir, output_dir, temp_dir, *flags) -> tuple[Run, str]:
    seconds, stdout = timed(
        [sys.executable, str(PROJECT_ROOT / "pipeline" / "run_local.py"),
         "--data-dir", str(data_dir), "--output-dir", str(output_dir), *flags],
        subprocess_env(temp_dir))
    run = Run(seconds)
    # "Evaluator (overall): candidate auc 0.871, binary_accuracy 0.842; baseline ..."
    if match := re.search(r"^Evaluator \(overall\): candidate ([^;\n]*)", stdout, re.M):
        metrics = dict(re.findall(r"(\w+) ([\d.]+)", match.group(1)))
        run.auc = float(metrics["auc"]) if "auc" in metrics else None
        run.accuracy = (float(metrics["binary_accuracy"])
                        if "binary_accuracy" in metrics else None)
    print(f"  {case}: {seconds:.1f}s\n" + "\n".join("    " + line
                                                  for line in stdout.splitlines()), flush=True)
    return run, stdout


def completed_executions(output_dir) -> dict[str, int]:
    """Executions that ran (not cached), by component type, from ML Metadata."""
    from ml_metadata.proto import metadata_store_pb2

    from metadata import connection

    store = connection.open_reader(connection.sqlite_config(output_dir / config.METADATA_FILE))
    types = {t.id: t.name.rsplit(".", 1)[-1] for t in store.get_execution_types()}
    counts: dict[str, int] = {}
    for execution in store.get_executions():
        # Resolver nodes query ML Metadata on every run; caching is not meant to skip them.
        if (execution.last_known_state == metadata_store_pb2.Execution.COMPLETE
                and types[execution.type_id] != "Resolver"):
            counts[types[execution.type_id]] = counts.get(types[execution.type_id], 0) + 1
    return counts


def pushed_versions(output_dir) -> set[str]:
    serving_dir = output_dir / config.SERVING_MODEL_DIR / config.MODEL_NAME
    return {p.name for p in serving_dir.glob("[0-9]*")} if serving_dir.is_dir() else set()


def add_copy_of_span(data_dir: pathlib.Path, source_span: int, new_span: int):
    """A new span folder holding `source_span`'s rows, renamed into place whole."""
    span_dir = data_dir / f"span-{new_span}"
    span_dir.mkdir()
    partial = span_dir / "data.csv.partial"  # not read while it is still being written
    shutil.copyfile(data_dir / f"span-{source_span}" / "data.csv", partial)
    partial.rename(span_dir / "data.csv")


def check_nothing_reran(run: Run, output_dir, ran_before, pushed_before):
    ran_after = completed_executions(output_dir)
    re_executed = {name: ran_after[name] - ran_before.get(name, 0) for name in ran_after
                   if ran_after[name] > ran_before.get(name, 0)}
    newly_pushed = pushed_versions(output_dir) - pushed_before
    run.notes.append(
        ("re-executed: " + ", ".join(f"{n} x{c}" for n, c in sorted(re_executed.items()))
         if re_executed else "nothing re-executed") + "; " +
        (f"pushed version {', '.join(sorted(newly_pushed))}" if newly_pushed
         else "nothing pushed"))


def run_ours_cases(work_dir: pathlib.Path) -> dict[str, Run]:
    runs = {}
    temp_dir = work_dir / "tmp"
    data_dir, output_dir = work_dir / "cold-data", work_dir / "cold-outputs"
    make_spans(data_dir, 1, LAST_SPAN)
    runs[COLD], _ = run_ours(COLD, data_dir, output_dir, temp_dir)

    ran_before, pushed_before = completed_executions(output_dir), pushed_versions(output_dir)
    runs[RERUN], _ = run_ours(RERUN, data_dir, output_dir, temp_dir)
    runs[RERUN].auc = runs[RERUN].accuracy = None  # it trains nothing
    check_nothing_reran(runs[RERUN], output_dir, ran_before, pushed_before)

    # The data has no quarter after the last, so the next span repeats its rows: the
    # served model (trained on it) has not decayed there, and the run costs what a
    # real quarter of that size would.
    add_copy_of_span(data_dir, LAST_SPAN, LAST_SPAN + 1)
    runs[NO_TRAIN], stdout = run_ours(NO_TRAIN, data_dir, output_dir, temp_dir,
                                      "--retrain-on", "decay")
    if match := re.search(r"^Not retrained: (.*?)\.(?: |$)", stdout, re.M):
        runs[NO_TRAIN].auc = runs[NO_TRAIN].accuracy = None
        runs[NO_TRAIN].notes.append(f"not retrained: {match.group(1)}")
    else:
        runs[NO_TRAIN].notes.append("it trained: the served model decayed on the span")

    # The cold folder had span 16 from the start, so a store that trained spans
    # 1..15 is set up in a new folder (untimed) before span 16 arrives.
    data_dir, output_dir = work_dir / "data", work_dir / "outputs"
    make_spans(data_dir, 1, LAST_SPAN - 1)
    run_ours(f"(set-up, untimed: spans 1..{LAST_SPAN - 1})", data_dir, output_dir, temp_dir)
    make_spans(data_dir, LAST_SPAN, LAST_SPAN)
    runs[NEW_SPAN], stdout = run_ours(NEW_SPAN, data_dir, output_dir, temp_dir)
    if "Pushed model version" not in stdout:
        runs[NEW_SPAN].notes.append("nothing pushed (the Evaluator did not bless it)")
    return runs


def one_repetition(repetition: int, only: str | None) -> dict[str, Run]:
    work_dir = pathlib.Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
    # The example with only our runner settings, as users would start from it, and
    # with all of our Beam arguments, to show how much of the difference they make.
    runners = [("tfx", lambda: {TFX: run_tfx_example(work_dir / "tfx"),
                                TFX_OUR_BEAM: run_tfx_example(work_dir / "tfx-our-beam",
                                                              "--our-beam-args")}),
               ("ours", lambda: run_ours_cases(work_dir / "ours"))]
    # Alternate which goes first, so slow drift of the machine hits both alike.
    if repetition % 2:
        runners.reverse()
    runs = {}
    try:
        for name, runner in runners:
            if only in (None, name):
                runs.update(runner())
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return runs


# --- the report --------------------------------------------------------------------------

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


def _median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def table(repetitions: list[dict[str, Run]]) -> list[str]:
    medians = {case: statistics.median(r[case].seconds for r in repetitions)
               for case in CASES if case in repetitions[0]}
    lines = ["| run | median s | ratio | target | met | all runs (s) | AUC | accuracy |",
             "|---|---:|---:|---|---|---|---:|---:|"]
    for case, median in medians.items():
        ratio, target, met = "", "", ""
        if case in RATIO_TO and RATIO_TO[case] in medians:
            ratio = f"{median / medians[RATIO_TO[case]]:.2f}x {short(RATIO_TO[case])}"
        if case in TARGETS:
            kind, bound = TARGETS[case]
            if kind == "seconds":
                target, value = f"<= {bound:g} s", median
            else:
                target = f"<= {bound:g}x {short(RATIO_TO[case])}"
                value = (median / medians[RATIO_TO[case]]
                         if RATIO_TO[case] in medians else None)
            met = "" if value is None else ("yes" if value <= bound else "no")
        auc = _median_or_none([r[case].auc for r in repetitions])
        accuracy = _median_or_none([r[case].accuracy for r in repetitions])
        lines.append(
            f"| {case} | {median:.1f} | {ratio} | {target} | {met} | "
            f"{', '.join(f'{r[case].seconds:.1f}' for r in repetitions)} | "
            f"{'-' if auc is None else f'{auc:.3f}'} | "
            f"{'-' if accuracy is None else f'{accuracy:.3f}'} |")
    notes = sorted({f"{case}: {note}" for r in repetitions for case, run in r.items()
                    for note in run.notes})
    return lines + ([""] + [f"- {note}" for note in notes] if notes else [])


def short(case: str) -> str:
    return {TFX: "TFX example", COLD: "our cold run"}.get(case, case)


def report(repetitions, args) -> str:
    command = "python benchmarks/pipeline_bench.py " + " ".join(
        filter(None, [f"--repetitions {args.repetitions}",
                      f"--only {args.only}" if args.only else ""]))
    return "\n".join([
        "# Pipeline timings",
        "",
        f"- Date: {time.strftime('%Y-%m-%d')}",
        f"- Machine: {machine_description()}",
        f"- Command: `{command}`; medians of {len(repetitions)} repetition"
        f"{'s' if len(repetitions) != 1 else ''}, TFX's example "
        "and ours alternating which goes first",
        "- Baseline: TFX's own Chicago taxi native-Keras example from the installed tfx "
        "package (its `_create_pipeline`, data folder and module file: all 15,002 trips, "
        "ExampleGen through Pusher, 1,000 training steps) on LocalDagRunner with our runner "
        f"settings (`{' '.join(config.LOCAL_RUNNER_ARGS)}`), new store each time "
        "(benchmarks/tfx_taxi_example.py); once more with all of our Beam arguments "
        f"(`{' '.join(a for a in config.BEAM_PIPELINE_ARGS if a not in config.LOCAL_RUNNER_ARGS)}`)",
        "- Ours: the same CSV as 16 quarterly spans, training window of 4 spans. Cold: new "
        "store with spans 1..16 on disk (span 16 runs, spans 13..15 are backfilled). Rerun: "
        f"the same folder again. Then span {LAST_SPAN + 1} arrives there, a copy of span "
        f"{LAST_SPAN}'s rows (the data ends at span {LAST_SPAN}), and runs with "
        "`--retrain-on decay`: the served model has not decayed on it, so it does not "
        f"train. New span: in a new folder, after an untimed set-up run on spans "
        f"1..{LAST_SPAN - 1}, span {LAST_SPAN} arrives and runs with the default policy "
        "(it trains)",
        "- Times are whole processes (`run_local.py`, or the example's runner: Python and "
        "TFX start-up included); AUC and accuracy are the Evaluator's on the overall slice "
        "of the candidate, for runs that train",
        "",
        *table(repetitions),
        ""])


def write_results(text: str):
    # A hand-written "## Findings" section survives a re-run; only the numbers change.
    previous = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    findings = previous[previous.find(FINDINGS):] if FINDINGS in previous else ""
    RESULTS.write_text(text + ("\n" + findings if findings else ""), encoding="utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--only", choices=("ours", "tfx"),
                        help="run only one side (a quick check; ratios need both)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    repetitions = []
    for repetition in range(args.repetitions):
        print(f"repetition {repetition + 1}:", flush=True)
        runs = one_repetition(repetition, args.only)
        print(f"repetition {repetition + 1}: " + ", ".join(
            f"{short(case)}: {runs[case].seconds:.1f}s" for case in CASES if case in runs),
              flush=True)
        repetitions.append(runs)

    text = report(repetitions, args)
    print("\n" + text)
    if not args.no_write:
        write_results(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
