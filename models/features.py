"""The taxi features, named once, and how each is encoded.

Every other module (preprocessing, model, serving signatures, tests) reads the
feature lists from here, so adding a feature is a one-file change.
"""

# The label is derived, not read: did the rider tip more than 20% of the fare?
LABEL_KEY = "big_tipper"
TIPS_KEY = "tips"
FARE_KEY = "fare"
BIG_TIP_FRACTION = 0.2

# Dense numbers, scaled to z-scores; missing values take the feature's mean.
NUMERIC_FEATURES = ["trip_miles", "fare", "trip_seconds"]

# Strings mapped to ids with a vocabulary; unseen values fall into OOV buckets.
VOCABULARY_FEATURES = ["payment_type", "company"]
VOCABULARY_TOP_K = 100
VOCABULARY_OOV_BUCKETS = 5

# Coordinates, cut into quantile buckets (a grid over the city).
BUCKET_FEATURES = ["pickup_latitude", "pickup_longitude",
                   "dropoff_latitude", "dropoff_longitude"]
BUCKET_COUNT = 10

# Small integer categories, with the number of distinct ids each can take.
CATEGORICAL_FEATURES = {
    "trip_start_hour": 24,
    "trip_start_day": 8,
    "trip_start_month": 13,
    "pickup_community_area": 78,
    "dropoff_community_area": 78,
}

# Raw columns the model reads; the rest of the CSV (timestamps, census tracts,
# tips) is validated but not a model input.
RAW_FEATURES = (NUMERIC_FEATURES + VOCABULARY_FEATURES + BUCKET_FEATURES
                + list(CATEGORICAL_FEATURES))


def transformed_name(key: str) -> str:
    return key + "_xf"


TRANSFORMED_LABEL_KEY = transformed_name(LABEL_KEY)
