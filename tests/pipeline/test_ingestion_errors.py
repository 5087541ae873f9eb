"""A span that cannot be trusted stops the run and says where to look: malformed
CSV files at ingestion (span, file, row, fields), empty or nearly empty spans at
validation (span, split, the schema's dataset constraint). Nothing is trained or
pushed either way."""
import csv
import pathlib

import pytest
from ml_metadata.proto import metadata_store_pb2

from metadata import connection, runs
from pipeline.components.csv_ingestion import IngestionError, check_csv_file, check_span_files
from pipeline.lineage.store import open_store
from tests.conftest import copy_store, run_pipeline

BAD_SPAN = 17  # after the shared store's spans 13..16; each test runs on a copy
STEPS_AFTER_THE_GATE = ("Transform", "Trainer", "Evaluator", "Pusher")


def read_rows(csv_path) -> list[list[str]]:
    with open(csv_path, newline="") as f:
        return list(csv.reader(f))


def write_rows(csv_path: pathlib.Path, rows):
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def served_versions(output_dir) -> list[str]:
    return sorted(p.name for p in (output_dir / "serving_model" / "taxi_tips").iterdir())


def latest_run_steps(metadata_path) -> dict[str, str]:
    """{node id: execution state} of the latest pipeline run, from ML Metadata."""
    store = open_store(str(metadata_path))
    run = max(store.get_contexts_by_type("pipeline_run"),
              key=lambda context: (context.create_time_since_epoch, context.id))
    steps = {}
    for execution in store.get_executions_by_context(run.id):
        (node,) = [c.name.split(".", 1)[1] for c in store.get_contexts_by_execution(execution.id)
                   if c.type_id == store.get_context_type("node").id]
        steps[node] = metadata_store_pb2.Execution.State.Name(execution.last_known_state)
    return steps


@pytest.mark.parametrize("rows", [0, 3], ids=["header-only", "three-rows"])
def test_empty_or_nearly_empty_span_stops_the_run_at_validation(pipeline_runs, tmp_path, rows):
    data_dir, output_dir = copy_store(pipeline_runs, tmp_path)
    versions_before = served_versions(output_dir)
    write_rows(data_dir / f"span-{BAD_SPAN}" / "data.csv",
               read_rows(data_dir / "span-15" / "data.csv")[:1 + rows])

    result = run_pipeline(data_dir, output_dir)

    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert f"The run failed: ExampleValidator found anomalies in span {BAD_SPAN}" in out
    # Both splits are too small; TFDV calls an empty one data_missing and checks
    # nothing else in it, so the gate reports that itself.
    for split in ("train", "eval"):
        assert f"[{split}] dataset: " in out
    if rows == 0:
        assert out.count("No examples (TFDV: data_missing") == 2
    else:
        assert "The dataset has 3 examples, which is fewer than expected." in out
    assert out.count("dataset_constraints.min_examples_count is 10") == 2
    assert "nothing was trained or pushed" in out
    assert "Traceback" not in out

    steps = latest_run_steps(output_dir / "metadata.sqlite")
    assert steps["CsvExampleGen"] == "COMPLETE" and steps["ValidationGate"] == "FAILED"
    assert not set(steps) & set(STEPS_AFTER_THE_GATE), steps
    assert served_versions(output_dir) == versions_before


def test_row_with_missing_fields_stops_the_run_at_ingestion(pipeline_runs, tmp_path):
    data_dir, output_dir = copy_store(pipeline_runs, tmp_path)
    versions_before = served_versions(output_dir)
    rows = read_rows(data_dir / "span-15" / "data.csv")
    rows[5] = rows[5][:-2]  # data row 5, line 6: the last two fields lost
    bad_file = data_dir / f"span-{BAD_SPAN}" / "data.csv"
    write_rows(bad_file, rows)

    result = run_pipeline(data_dir, output_dir)

    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert (f"The run failed: Span {BAD_SPAN} cannot be ingested: {bad_file.resolve()}\n"
            "  data row 5 (line 6) has 16 fields, the header has 18, so the last 2 "
            "columns have no value: dropoff_community_area, tips\n"
            "Nothing was trained or pushed. Fix or replace the file, then run again.") in out
    assert "CsvExampleGen" in out and "FAILED" in out
    assert "Traceback" not in out

    steps = latest_run_steps(output_dir / "metadata.sqlite")
    assert steps["CsvExampleGen"] == "FAILED"
    # ImportSchemaGen needs no examples, so it may have run; nothing downstream did.
    downstream = {"StatisticsGen", "ExampleValidator", "ValidationGate", *STEPS_AFTER_THE_GATE}
    assert not set(steps) & downstream, steps
    store = connection.open_reader(connection.sqlite_config(output_dir / "metadata.sqlite"))
    assert BAD_SPAN not in runs.ingested_spans(store, "taxi_tips")
    assert served_versions(output_dir) == versions_before


# The check itself, on small files: no TFX run.

HEADER = "fare,payment_type,tips\n"


def write(tmp_path, text: str | bytes, name="data.csv") -> str:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def failure(path, span=7) -> str:
    with pytest.raises(IngestionError) as caught:
        check_csv_file(path, span)
    message = str(caught.value)
    assert message.startswith(f"Span {span} cannot be ingested: {path}\n")
    assert message.endswith("Nothing was trained or pushed. Fix or replace the file, "
                            "then run again.")
    return message


def test_short_row_names_its_row_line_and_the_columns_left_without_value(tmp_path):
    path = write(tmp_path, HEADER + "5.0,Cash,1.0\n7.5\n")
    assert ("data row 2 (line 3) has 1 fields, the header has 3, so the last 2 columns "
            "have no value: payment_type, tips") in failure(path)


def test_long_row_names_how_many_fields_too_many(tmp_path):
    path = write(tmp_path, HEADER + "5.0,Cash,1.0,extra,extra\n")
    assert "data row 1 (line 2) has 5 fields, the header has 3: 2 more than the header " \
           "names" in failure(path)


def test_many_bad_rows_are_summarized(tmp_path):
    path = write(tmp_path, HEADER + "5.0\n" * 8)
    message = failure(path)
    assert "data row 5 (line 6)" in message and "data row 6 " not in message
    assert "... and 3 more rows with the wrong number of fields" in message


def test_empty_file_has_no_header(tmp_path):
    assert "the file is empty: not even a header row" in failure(write(tmp_path, ""))


def test_bytes_that_are_not_utf8_are_named_by_line(tmp_path):
    path = write(tmp_path, HEADER.encode() + b"5.0,Cash,1.0\n5.0,Cr\xe9dit Card,1.0\n")
    assert "line 3 is not UTF-8 text: byte b'\\xe9' at byte 7 of the line" in failure(path)


def test_quote_never_closed_is_named_by_line(tmp_path):
    path = write(tmp_path, HEADER + '5.0,"Cash,1.0\n7.5,Cash,1.0\n')
    assert "line 2 opens a quoted field that is never closed" in failure(path)


def test_what_csv_example_gen_reads_passes(tmp_path):
    # A header without rows is left to the schema's dataset constraints.
    assert check_csv_file(write(tmp_path, HEADER), 7) == ["fare", "payment_type", "tips"]
    # Blank lines are skipped and a quoted field may hold commas and line breaks.
    path = write(tmp_path, HEADER + '5.0,Cash,1.0\n\n7.5,"Credit\nCard, late",2.0\n',
                 name="quoted.csv")
    assert check_csv_file(path, 7) == ["fare", "payment_type", "tips"]


def test_files_of_one_span_must_share_a_header(tmp_path):
    first = write(tmp_path, HEADER + "5.0,Cash,1.0\n", name="a.csv")
    second = write(tmp_path, "fare,tips\n5.0,1.0\n", name="b.csv")
    with pytest.raises(IngestionError) as caught:
        check_span_files(7, str(tmp_path / "*.csv"), [first, second])
    assert f"Span 7 cannot be ingested: {second}\n" in str(caught.value)
    assert f"its header differs from the one of {first}: missing columns payment_type; " \
           "extra columns none" in str(caught.value)


def test_no_file_for_the_span(tmp_path):
    with pytest.raises(IngestionError, match=r"Span 7 cannot be ingested: no file matches "
                                             r".*span-7/\*\.csv"):
        check_span_files(7, str(tmp_path / "span-7" / "*.csv"), [])
