"""Lay out the Chicago taxi trips CSV as time-ordered spans, one per quarter.

The pipeline reads `span-{SPAN}/data.csv` with ExampleGen's `{SPAN}` pattern, so
each quarter of trip start times arrives as a new span, as production data would.
The source is the CSV the tfx wheel ships; nothing is downloaded.
"""
import argparse
import csv
import datetime
import importlib.util
import pathlib
import sys

DEFAULT_OUT = pathlib.Path(__file__).resolve().parent / "spans"
TIMESTAMP_COLUMN = "trip_start_timestamp"
FIRST_QUARTER = (2013, 1)  # span 1; the data set starts in January 2013


def tfx_taxi_csv() -> pathlib.Path:
    """The taxi CSV inside the installed tfx package, found without importing tfx."""
    spec = importlib.util.find_spec("tfx")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("make_spans: the tfx package is not installed; run `make setup` first.")
    path = (pathlib.Path(list(spec.submodule_search_locations)[0])
            / "examples/chicago_taxi_pipeline/data/simple/data.csv")
    if not path.is_file():
        sys.exit(f"make_spans: {path} is missing from the tfx wheel.")
    return path


def span_of(timestamp: int) -> int:
    """Span number of a trip: 1 for 2013 Q1, 2 for 2013 Q2, and so on."""
    start = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
    quarter = (start.month - 1) // 3 + 1
    return (start.year - FIRST_QUARTER[0]) * 4 + (quarter - FIRST_QUARTER[1]) + 1


def read_rows_by_span(source: pathlib.Path):
    with source.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        column = header.index(TIMESTAMP_COLUMN)
        by_span: dict[int, list[list[str]]] = {}
        for row in reader:
            by_span.setdefault(span_of(int(row[column])), []).append(row)
    for rows in by_span.values():
        rows.sort(key=lambda row: int(row[column]))
    return header, by_span


def write_spans(out_dir: pathlib.Path, header, by_span, through_span=None,
                max_rows_per_span=None, first_span=1) -> list[int]:
    written = []
    for span in sorted(by_span):
        if span < first_span or (through_span is not None and span > through_span):
            continue
        rows = by_span[span]
        if max_rows_per_span is not None:
            # Every k-th row keeps the quarter's spread over time in a small slice.
            step = max(1, len(rows) // max_rows_per_span)
            rows = rows[::step][:max_rows_per_span]
        span_dir = out_dir / f"span-{span}"
        span_dir.mkdir(parents=True, exist_ok=True)
        # Write then rename, so ExampleGen never reads a half-written span.
        partial = span_dir / "data.csv.partial"
        with partial.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
        partial.rename(span_dir / "data.csv")
        written.append(span)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT,
                        help=f"folder for span-N/data.csv (default {DEFAULT_OUT})")
    parser.add_argument("--first-span", type=int, default=1,
                        help="first span to lay out (default 1 = 2013 Q1)")
    parser.add_argument("--through-span", type=int, default=None,
                        help="last span to lay out, to simulate data that has not "
                             "arrived yet (default: all 16 quarters)")
    parser.add_argument("--max-rows-per-span", type=int, default=None,
                        help="keep at most this many trips per span (small test slices)")
    parser.add_argument("--source", type=pathlib.Path, default=None,
                        help="taxi CSV to split (default: the one in the tfx wheel)")
    args = parser.parse_args(argv)

    header, by_span = read_rows_by_span(args.source or tfx_taxi_csv())
    written = write_spans(args.out, header, by_span, args.through_span,
                          args.max_rows_per_span, args.first_span)
    if not written:
        sys.exit("make_spans: no span matched --first-span/--through-span.")
    print(f"Wrote spans {written[0]}..{written[-1]} ({len(written)} quarters) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
