"""The pipeline as a user runs it: `python pipeline/run_local.py`, three times on
one store (first run, rerun with nothing new, run after a new span)."""
import re
import subprocess

from tests.conftest import PROJECT_ROOT, PYTHON

COMPONENTS = ["CsvExampleGen", "StatisticsGen", "SchemaGen", "ImportSchemaGen",
              "ExampleValidator", "ValidationGate", "Transform", "Trainer",
              "Evaluator", "InfraValidator", "Pusher"]


def component_status(stdout: str) -> dict[str, str]:
    """{component: ran|cached|resolved|...} from the one-line-per-component report."""
    found = {}
    for line in stdout.splitlines():
        match = re.match(r"  (\S+)( \(backfill span \d+\))?\s+(\w+)\s+[\d.]+s$", line)
        if match and not match.group(2):
            found[match.group(1)] = match.group(3)
    return found


def test_first_run_backfills_the_window_runs_every_component_and_pushes(pipeline_runs):
    out = pipeline_runs.first.stdout
    assert "Trained on spans 13, 14, 15." in out
    assert re.search(r"CsvExampleGen \(backfill span 13\)\s+ran", out)
    assert re.search(r"CsvExampleGen \(backfill span 14\)\s+ran", out)
    # Older spans are validated on the way in, as the newest one is.
    assert re.search(r"ValidationGate \(backfill span 13\)\s+ran", out)
    status = component_status(out)
    # The curated schema was already imported by the backfill runs.
    expected = {name: "cached" if name == "ImportSchemaGen" else "ran" for name in COMPONENTS}
    assert {name: status.get(name) for name in COMPONENTS} == expected
    version = re.search(r"Pushed model version (\d+)\.", out).group(1)
    assert pipeline_runs.pushed_versions()[0] == int(version)
    assert (pipeline_runs.serving_dir / version / "saved_model.pb").is_file()


def test_console_is_for_people_and_the_full_log_goes_to_the_file(pipeline_runs):
    out = pipeline_runs.first.stdout + pipeline_runs.first.stderr
    assert "INFO:absl" not in out and "WARNING" not in out
    log = (pipeline_runs.output_dir / "logs" / "run_local.log").read_text()
    assert "Component Trainer is running." in log
    assert f"Metadata store:    {pipeline_runs.metadata_path}" in out


def test_rerun_with_no_new_data_reuses_every_component(pipeline_runs):
    out = pipeline_runs.cached.stdout
    status = component_status(out)
    assert {name: status.get(name) for name in COMPONENTS} == {n: "cached" for n in COMPONENTS}
    assert "backfill" not in out
    assert "Nothing new to push" in out


def test_new_span_trains_on_the_moved_window_and_pushes_a_new_version(pipeline_runs):
    out = pipeline_runs.after_new_span.stdout
    assert "Trained on spans 14, 15, 16." in out
    status = component_status(out)
    for name in ["CsvExampleGen", "StatisticsGen", "Transform", "Trainer", "Evaluator",
                 "InfraValidator", "Pusher"]:
        assert status[name] == "ran", name
    assert status["ImportSchemaGen"] == "cached"
    versions = pipeline_runs.pushed_versions()
    assert len(versions) == 2
    assert f"Pushed model version {versions[1]}." in out
    # No half-written version or staging folder is left in the serving directory.
    assert sorted(p.name for p in pipeline_runs.serving_dir.iterdir()) == \
        [str(v) for v in versions]


def test_help_documents_every_flag():
    result = subprocess.run([PYTHON, str(PROJECT_ROOT / "pipeline" / "run_local.py"), "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for flag in ["--data-dir", "--output-dir", "--training-window-spans", "--train-steps",
                 "--min-auc", "--min-accuracy", "--max-auc-drop-vs-baseline", "--no-cache",
                 "--infra-p99-target-ms", "--infra-load-rate", "--infra-load-seconds",
                 "--no-infra-warmup"]:
        assert flag in result.stdout


def test_missing_data_gives_one_clear_error(tmp_path):
    result = subprocess.run(
        [PYTHON, str(PROJECT_ROOT / "pipeline" / "run_local.py"),
         "--data-dir", str(tmp_path / "nothing"), "--output-dir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "No data" in result.stdout
    assert "python data/make_spans.py" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
