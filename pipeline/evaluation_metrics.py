"""The Evaluator's AUC, with the pipeline's number of thresholds as its default.

TFMA takes a metric's arguments as a JSON string (MetricConfig.config); inside
the Evaluator's eval_config, stored in ML Metadata as JSON, it becomes JSON in
JSON, full of backslashes (\\"). ML Metadata 1.16 cannot store a string holding
a backslash in PostgreSQL: its EscapeString strips the quotes libpq's
PQescapeLiteral puts around the value, but not the ` E` prefix libpq adds for
backslashes, and the INSERT is a syntax error. So the count is in the class
(named apart from "AUC": TFMA takes a registered name's class, ignoring module).
"""
import tensorflow_model_analysis as tfma

from pipeline import config as pipeline_config


class PipelineAUC(tfma.metrics.AUC):
    """TFMA's AUC (what MetricConfig(class_name="AUC") gives), with the same
    metric name, "auc"."""

    NUM_THRESHOLDS = pipeline_config.PipelineConfig.auc_num_thresholds

    def __init__(self, num_thresholds: int | None = None, **kwargs):
        super().__init__(num_thresholds=num_thresholds or self.NUM_THRESHOLDS, **kwargs)


def auc_config(num_thresholds: int, **fields) -> tfma.MetricConfig:
    """The AUC's MetricConfig: no JSON argument unless the count differs from
    the default (then it cannot be stored in PostgreSQL, see above)."""
    metric = tfma.MetricConfig(class_name=PipelineAUC.__name__, module=__name__, **fields)
    if num_thresholds != PipelineAUC.NUM_THRESHOLDS:
        metric.config = f'"num_thresholds": {int(num_thresholds)}'
    return metric
