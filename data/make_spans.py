"""Lay out the Chicago taxi trips CSV as time-ordered spans, one per quarter.

The pipeline reads `span-{SPAN}/data.csv` with ExampleGen's `{SPAN}` pattern, so
each quarter of trip start times arrives as a new span, as production data would.
The source is the CSV the tfx wheel ships; nothing is downloaded.
`--synthetic-rows N` makes bigger spans (for benchmarks at scale) by resampling
each quarter's real trips with a little seeded jitter: N rows in all, the same
bytes for the same seed.
"""
import argparse
import csv
import datetime
import importlib.util
import pathlib
import random
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


# Synthetic rows: a real trip of the same quarter, its length (fare, miles, seconds
# and tips by one factor, so the tip's share of the fare, hence the label, stays)
# and its coordinates jittered. Categorical columns, the community areas and the
# hour, day and month are the real trip's; the timestamp moves within its own
# 15-minute slot (every real one is a multiple of 900 s), so none of them changes.
LENGTH_COLUMNS = {"fare": 2, "trip_miles": 2, "trip_seconds": 0, "tips": 2}  # decimals
COORDINATE_COLUMNS = ("pickup_latitude", "pickup_longitude",
                      "dropoff_latitude", "dropoff_longitude")
LENGTH_JITTER = 0.1  # sigma of the log of the length factor: about +-10%
COORDINATE_JITTER = 0.003  # degrees, sigma: about 300 m
TIMESTAMP_SLOT_SECONDS = 900
BIG_TIP_FRACTION = 0.2  # models/features.py's; data/ imports nothing of the model's


def _is_big_tip(row, column) -> bool:
    fare = float(row[column["fare"]] or 0)
    return float(row[column["tips"]] or 0) > fare * BIG_TIP_FRACTION


def jittered_trip(real: list[str], column: dict, rng: random.Random) -> list[str]:
    """A new trip like `real`: same categories and label, slightly different numbers."""
    row = list(real)
    factor = rng.lognormvariate(0.0, LENGTH_JITTER)
    for name, decimals in LENGTH_COLUMNS.items():
        if row[column[name]]:
            value = max(0.0, float(row[column[name]]) * factor)
            row[column[name]] = str(round(value)) if decimals == 0 else f"{value:.{decimals}f}"
    if _is_big_tip(row, column) != _is_big_tip(real, column):
        # Rounding moved a tip across the 20% line: keep the real trip's amounts.
        for name in ("fare", "tips"):
            row[column[name]] = real[column[name]]
    for name in COORDINATE_COLUMNS:
        if row[column[name]]:
            row[column[name]] = f"{float(row[column[name]]) + rng.gauss(0.0, COORDINATE_JITTER):.6f}"
    stamp = int(real[column[TIMESTAMP_COLUMN]])
    row[column[TIMESTAMP_COLUMN]] = str(stamp - stamp % TIMESTAMP_SLOT_SECONDS
                                        + rng.randrange(TIMESTAMP_SLOT_SECONDS))
    return row


def rows_per_span(real_counts: dict[int, int], total: int) -> dict[int, int]:
    """`total` rows shared out in proportion to the real quarters' sizes (largest
    remainders), so the synthetic spans keep the real ones' relative sizes."""
    real_total = sum(real_counts.values())
    exact = {span: total * count / real_total for span, count in real_counts.items()}
    shares = {span: int(value) for span, value in exact.items()}
    by_remainder = sorted(exact, key=lambda span: (shares[span] - exact[span], span))
    for span in by_remainder[:total - sum(shares.values())]:
        shares[span] += 1
    return shares


def synthetic_spans(header, by_span, total_rows: int, seed: int):
    """Each span resampled (with replacement) from its own real trips, with jitter.
    A generator per span, seeded by (seed, span): a span's rows do not depend on
    which other spans are laid out."""
    column = {name: index for index, name in enumerate(header)}
    shares = rows_per_span({span: len(rows) for span, rows in by_span.items()}, total_rows)
    synthetic = {}
    for span, rows in by_span.items():
        rng = random.Random(f"{seed}/{span}")
        trips = [jittered_trip(rng.choice(rows), column, rng) for _ in range(shares[span])]
        trips.sort(key=lambda row: int(row[column[TIMESTAMP_COLUMN]]))
        synthetic[span] = trips
    return synthetic


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
    parser.add_argument("--synthetic-rows", type=int, default=None, metavar="N",
                        help="N trips in all over the spans laid out, resampled from "
                             "each quarter's real trips with jitter (for benchmarks)")
    parser.add_argument("--seed", type=int, default=0,
                        help="with --synthetic-rows: the same seed writes the same bytes")
    args = parser.parse_args(argv)
    if args.synthetic_rows is not None and args.max_rows_per_span is not None:
        parser.error("--synthetic-rows and --max-rows-per-span exclude each other")

    header, by_span = read_rows_by_span(args.source or tfx_taxi_csv())
    by_span = {span: rows for span, rows in by_span.items()
               if span >= args.first_span and (args.through_span is None
                                               or span <= args.through_span)}
    if args.synthetic_rows is not None:
        if args.synthetic_rows < len(by_span):
            parser.error(f"--synthetic-rows {args.synthetic_rows} is fewer than one row "
                         f"for each of the {len(by_span)} spans; ask for more rows")
        by_span = synthetic_spans(header, by_span, args.synthetic_rows, args.seed)
    written = write_spans(args.out, header, by_span, args.through_span,
                          args.max_rows_per_span, args.first_span)
    if not written:
        sys.exit("make_spans: no span matched --first-span/--through-span.")
    print(f"Wrote spans {written[0]}..{written[-1]} ({len(written)} quarters) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
