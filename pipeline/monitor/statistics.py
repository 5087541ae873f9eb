"""TFDV statistics of the logged examples of one model version and window.

In memory, without Beam: tfx_bsl decodes the serialized tf.Examples to an Arrow
RecordBatch and TFDV's in-memory generator computes the same statistics its
Beam pipeline would. A window of requests is small (thousands of rows); a Beam
pipeline, even on the DirectRunner, costs seconds of start-up per window.
"""
import tensorflow_data_validation as tfdv
from tensorflow_data_validation.statistics import stats_impl
from tensorflow_metadata.proto.v0 import statistics_pb2
from tfx_bsl.coders import example_coder

SERVING_SPLIT = "serving"


def statistics_of(serialized_examples: list[bytes]) -> statistics_pb2.DatasetFeatureStatisticsList:
    """Statistics as StatisticsGen computes them (default options: the same
    histograms as Transform's pre_transform_stats, which skew compares with).

    No schema on decoding: each feature takes the type the server logged, so a
    float sent where the schema says INT shows as a type anomaly, not an error.
    """
    record_batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(serialized_examples)
    statistics = stats_impl.generate_statistics_in_memory(record_batch, tfdv.StatsOptions())
    statistics.datasets[0].name = SERVING_SPLIT
    return statistics
