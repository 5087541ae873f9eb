"""CsvExampleGen's executor, with every CSV file of the span checked before Beam reads it.

TFX's own reader fails on a malformed row deep inside Beam, with an error that
names no file, row or column; this one stops the run first and says where to look.
"""
import csv
import os

from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.example_gen.csv_example_gen import executor as csv_executor
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

# Enough bad rows to show a pattern (one column missing everywhere, or one odd
# row), few enough that the message stays readable.
MAX_REPORTED_ROWS = 5


class IngestionError(RuntimeError):
    """A span's CSV files cannot be turned into examples as they are."""


def _failure(span: int, path: str, problems: list[str]) -> IngestionError:
    return IngestionError(
        f"Span {span} cannot be ingested: {path}\n  " + "\n  ".join(problems) +
        "\nNothing was trained or pushed. Fix or replace the file, then run again.")


def _numbered_lines(path: str, span: int):
    """(line number, text) of each line. TFX decodes each line as UTF-8, so
    decoding line by line here names the exact line with a bad byte."""
    try:
        with fileio.open(path, "rb") as f:
            for line_number, line in enumerate(f, start=1):
                try:
                    yield line_number, line.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise _failure(span, path, [
                        f"line {line_number} is not UTF-8 text: byte "
                        f"{line[error.start:error.start + 1]!r} at byte {error.start + 1} "
                        "of the line (save the file as UTF-8)"]) from None
    except (OSError, fileio.NotFoundError) as error:
        raise _failure(span, path, [f"the file cannot be read: {error}"]) from None


def _records(path: str, span: int, lines):
    """(first line number, fields) of each record after the header, split as
    TFX's reader splits them: lines are joined until their quotes balance, so
    a quoted field may hold line breaks, and a quote never closed is an error."""
    pending, first_line, quotes = [], 0, 0
    for line_number, line in lines:
        if not pending:
            first_line = line_number
        pending.append(line)
        quotes += line.count('"')
        if quotes % 2 == 0:
            try:
                fields = next(csv.reader(["".join(pending)]), [])
            except csv.Error as error:
                raise _failure(span, path, [
                    f"line {first_line} is not valid CSV: {error}"]) from None
            yield first_line, fields
            pending, quotes = [], 0
    if pending:
        raise _failure(span, path, [
            f"line {first_line} opens a quoted field that is never closed"])


def _wrong_field_count(header: list[str], fields: list[str], row_number: int,
                       line_number: int) -> str:
    found = (f"data row {row_number} (line {line_number}) has {len(fields)} fields, "
             f"the header has {len(header)}")
    if len(fields) < len(header):
        # Fields carry no names: the ones a row has fill the first columns.
        missing = header[len(fields):]
        return (f"{found}, so the last {len(missing)} columns have no value: "
                + ", ".join(missing))
    return f"{found}: {len(fields) - len(header)} more than the header names"


def check_csv_file(path: str, span: int) -> list[str]:
    """The header of a CSV file whose every row has one field per header column.

    Raises IngestionError naming the span, the file and what is wrong: no
    header, a line that is not UTF-8, an unclosed quote, or rows with too few or
    too many fields. Blank lines pass (CsvExampleGen skips them), and so does a
    header with no rows: the curated schema's dataset constraints judge how many
    rows a span needs.
    """
    lines = _numbered_lines(path, span)
    first = next(lines, None)
    header = next(csv.reader([first[1]]), []) if first else []
    if not any(name.strip() for name in header):
        raise _failure(span, path, [
            "the file is empty: not even a header row naming the columns"])
    bad_rows, row_number = [], 0
    for line_number, fields in _records(path, span, lines):
        if fields:
            row_number += 1
            if len(fields) != len(header):
                bad_rows.append(_wrong_field_count(header, fields, row_number, line_number))
    if bad_rows:
        shown = bad_rows[:MAX_REPORTED_ROWS]
        if len(bad_rows) > len(shown):
            shown.append(f"... and {len(bad_rows) - len(shown)} more rows with the "
                         "wrong number of fields")
        raise _failure(span, path, shown)
    return header


def check_span_files(span: int, pattern: str, csv_files: list[str]) -> None:
    """Every file well-formed, and all with the header of the first, which TFX
    takes as the column names of the whole split."""
    if not csv_files:
        raise IngestionError(
            f"Span {span} cannot be ingested: no file matches {pattern} (moved or "
            "deleted after the run started?). Nothing was trained or pushed. Put the "
            "span's CSV files back, then run again.")
    first_header = check_csv_file(csv_files[0], span)
    for path in csv_files[1:]:
        header = check_csv_file(path, span)
        if header != first_header:
            missing = [name for name in first_header if name not in header]
            extra = [name for name in header if name not in first_header]
            raise _failure(span, path, [
                f"its header differs from the one of {csv_files[0]}: missing columns "
                f"{', '.join(missing) or 'none'}; extra columns {', '.join(extra) or 'none'}"
                + ("" if missing or extra else "; the same columns in another order")])


def split_patterns(exec_properties: dict) -> list[str]:
    """The file patterns CsvExampleGen reads, one per input split. Its driver has
    already put the resolved span into each pattern (`{SPAN}` -> 16), and TFX's
    reader joins the pattern to input_base and globs it, as this does."""
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(
        exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
    input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    return [os.path.join(input_base, split.pattern) for split in input_config.splits]


class CsvIngestionExecutor(csv_executor.Executor):
    """TFX's CsvExampleGen executor, after a check of every file it will read."""

    def Do(self, input_dict, output_dict, exec_properties):
        span = exec_properties[example_gen_utils.SPAN_PROPERTY_NAME]
        for pattern in split_patterns(exec_properties):
            check_span_files(span, pattern, fileio.glob(pattern))
        super().Do(input_dict, output_dict, exec_properties)
