"""preprocessing_fn on real taxi trips, through TFT: label, z-scores, vocabularies
with OOV buckets, buckets, and missing values."""
import copy

import numpy as np

from models import features


def column(sample, key):
    return np.array([row[key] for row in sample.transformed])


def test_label_is_tip_above_twenty_percent_of_fare(transformed_sample):
    # float32, as the features are stored: 5.01 vs 0.2 * 25.05 sits on the edge.
    f32 = np.float32
    expected = [int(f32(r["tips"]) > f32(r["fare"]) * f32(0.2))
                for r in transformed_sample.raw_rows]
    assert column(transformed_sample, features.TRANSFORMED_LABEL_KEY).tolist() == expected
    assert 0 < sum(expected) < len(expected)  # the sample has both classes


def test_numeric_features_are_z_scores(transformed_sample):
    for key in features.NUMERIC_FEATURES:
        values = column(transformed_sample, features.transformed_name(key))
        assert abs(values.mean()) < 1e-3, key
        assert abs(values.std() - 1.0) < 1e-2, key


def test_vocabulary_ids_follow_frequency_and_unseen_values_go_to_oov(transformed_sample):
    payment = column(transformed_sample, features.transformed_name("payment_type"))
    raw = [r["payment_type"] for r in transformed_sample.raw_rows]
    most_common = max(set(raw), key=raw.count)
    assert set(payment[[value == most_common for value in raw]]) == {0}

    unseen = copy.deepcopy(transformed_sample.raw_instances[:2])
    unseen[0]["payment_type"] = [b"Bitcoin"]
    ids = transformed_sample.transform(unseen)[features.transformed_name("payment_type")]
    vocabulary_size = len(set(raw))
    assert vocabulary_size <= ids[0] < vocabulary_size + features.VOCABULARY_OOV_BUCKETS
    assert ids[1] < vocabulary_size


def test_coordinates_are_bucketized(transformed_sample):
    for key in features.BUCKET_FEATURES:
        buckets = column(transformed_sample, features.transformed_name(key))
        assert buckets.min() >= 0 and buckets.max() < features.BUCKET_COUNT, key
        assert len(set(buckets.tolist())) > features.BUCKET_COUNT // 2, key


def test_missing_values_are_filled(transformed_sample):
    rows = copy.deepcopy(transformed_sample.raw_instances[:3])
    rows[0]["trip_seconds"] = []        # missing number -> the mean -> z-score 0
    rows[0]["dropoff_latitude"] = []    # missing coordinate -> a valid bucket
    rows[0]["company"] = []             # missing string -> a valid id
    rows[0]["dropoff_community_area"] = []
    out = transformed_sample.transform(rows)
    assert abs(out[features.transformed_name("trip_seconds")][0]) < 1e-4
    assert 0 <= out[features.transformed_name("dropoff_latitude")][0] < features.BUCKET_COUNT
    assert out[features.transformed_name("company")][0] >= 0
    assert out[features.transformed_name("dropoff_community_area")][0] == 0
    for values in out.values():
        assert np.all(np.isfinite(values.astype(float)))


def test_categorical_ids_are_clipped_to_the_model_input_range(transformed_sample):
    rows = copy.deepcopy(transformed_sample.raw_instances[:1])
    rows[0]["trip_start_hour"] = [99]
    out = transformed_sample.transform(rows)
    assert out[features.transformed_name("trip_start_hour")][0] == \
        features.CATEGORICAL_FEATURES["trip_start_hour"] - 1
