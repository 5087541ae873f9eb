"""`data/make_spans.py --synthetic-rows N`: bigger spans for benchmarks, made by
resampling the real trips with seeded jitter."""
import csv
import importlib.util
import subprocess

from tests.conftest import PROJECT_ROOT, PYTHON

MAKE_SPANS = PROJECT_ROOT / "data" / "make_spans.py"
SCHEMA = PROJECT_ROOT / "pipeline" / "schema" / "schema.pbtxt"
ROWS = 3001  # not a multiple of the 4 spans: the shares must still add up


def synthetic(out_dir, seed: int, rows: int = ROWS, first: int = 13, last: int = 16):
    subprocess.run([PYTHON, str(MAKE_SPANS), "--out", str(out_dir), "--first-span", str(first),
                    "--through-span", str(last), "--synthetic-rows", str(rows),
                    "--seed", str(seed)], check=True, capture_output=True, text=True)
    return {path.parent.name: path.read_bytes() for path in sorted(out_dir.glob("span-*/data.csv"))}


def rows_of(data: bytes) -> list[dict]:
    return list(csv.DictReader(data.decode().splitlines()))


def test_the_same_seed_writes_the_same_bytes_and_exactly_n_rows(tmp_path):
    first = synthetic(tmp_path / "a", seed=7)
    assert first == synthetic(tmp_path / "b", seed=7)
    assert first != synthetic(tmp_path / "c", seed=8)
    assert list(first) == ["span-13", "span-14", "span-15", "span-16"]
    assert sum(len(rows_of(data)) for data in first.values()) == ROWS


def test_synthetic_rows_pass_the_curated_schema(tmp_path):
    import tensorflow_data_validation as tfdv

    synthetic(tmp_path / "spans", seed=0)
    schema = tfdv.load_schema_text(str(SCHEMA))
    statistics = tfdv.generate_statistics_from_csv(
        str(tmp_path / "spans" / "span-*" / "data.csv"),
        stats_options=tfdv.StatsOptions(schema=schema, infer_type_from_schema=True))
    anomalies = tfdv.validate_statistics(statistics, schema, environment="TRAINING")
    assert dict(anomalies.anomaly_info) == {}
    assert not anomalies.HasField("dataset_anomaly_info")


def test_a_jittered_trip_keeps_its_categories_and_its_label():
    spec = importlib.util.spec_from_file_location("make_spans", MAKE_SPANS)
    make_spans = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_spans)
    import random

    header, by_span = make_spans.read_rows_by_span(make_spans.tfx_taxi_csv())
    column = {name: index for index, name in enumerate(header)}
    rng = random.Random(0)
    kept = ["payment_type", "company", "pickup_community_area", "dropoff_community_area",
            "trip_start_hour", "trip_start_day", "trip_start_month"]
    for real in by_span[16]:
        trip = make_spans.jittered_trip(real, column, rng)
        assert [trip[column[name]] for name in kept] == [real[column[name]] for name in kept]
        assert make_spans._is_big_tip(trip, column) == make_spans._is_big_tip(real, column)
        assert make_spans.span_of(int(trip[column["trip_start_timestamp"]])) == 16
        if float(real[column["fare"]]) > 0:
            ratio = float(trip[column["fare"]]) / float(real[column["fare"]])
            assert 0.5 < ratio < 2.0
