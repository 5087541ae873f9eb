"""Decides whether a new span trains a model, by a policy over the span checks:
always, on decay of the served model, on drift of the data, or never. The
pipeline runs Transform to Pusher only when this says retrain.
"""
# Not `from tfx import v1`: see pipeline/pipeline.py.
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts
from tfx.types.artifact import Artifact

from pipeline.components.check_record import record
from pipeline.components.decay_check import ServedModelPerformance
from pipeline.components.drift_check import DataDrift

REPORT_FILE = "decision.json"
POLICIES = ("always", "decay", "drift")


class RetrainDecisionArtifact(Artifact):
    """retrain (0/1) and reason, as custom properties."""
    TYPE_NAME = "RetrainDecision"


def policies(train_when: str) -> set[str]:
    """'decay,drift' -> {'decay', 'drift'}; '' (never retrain) -> set()."""
    chosen = {name.strip() for name in train_when.split(",") if name.strip()}
    unknown = chosen - set(POLICIES)
    if unknown:
        raise ValueError(f"train_when={train_when!r}: unknown {sorted(unknown)}; use a "
                         f"comma list of {', '.join(POLICIES)}, or '' for never.")
    return chosen


def drift_description(drift) -> str:
    """e.g. 'fare 0.31 > 0.2, payment_type 0.43 > 0.2'."""
    features = [name for name in drift.get_string_custom_property("drifted_features")
                .split(",") if name]
    return ", ".join(
        f"{name} {drift.get_float_custom_property('distance:' + name):.2f} > "
        f"{drift.get_float_custom_property('threshold:' + name):g}" for name in features)


def closest_to_drift(drift) -> str:
    """e.g. 'pickup_latitude 0.15 of 0.4': the feature nearest its threshold,
    relative to it (thresholds differ tenfold between features)."""
    properties = drift.mlmd_artifact.custom_properties
    share = {}
    for key in properties:
        if key.startswith("distance:"):
            name = key.split(":", 1)[1]
            threshold = properties["threshold:" + name].double_value
            share[name] = (properties[key].double_value / threshold if threshold > 0
                           else float("inf"))
    if not share:
        return "no feature compared"
    name = max(share, key=share.get)
    return (f"{name} {drift.get_float_custom_property('distance:' + name):.2f} of "
            f"{drift.get_float_custom_property('threshold:' + name):g}")


def decide(train_when: str, served_model, performance, drift) -> tuple[bool, str]:
    """`performance` is given when the policy names decay, `drift` when it
    names drift; the decision reads nothing else."""
    chosen = policies(train_when)
    # Nothing to serve is worse than any model: every policy trains the first.
    if served_model is None:
        return True, "no served model yet"
    if "always" in chosen:
        return True, "new span"
    decayed = performance is not None and performance.get_int_custom_property("decayed") == 1
    drifted = drift is not None and drift.get_int_custom_property("drifted") == 1
    reasons = []
    if "decay" in chosen and decayed:
        reasons.append("decay: " + performance.get_string_custom_property("reason"))
    if "drift" in chosen and drifted:
        reasons.append("drift: " + drift_description(drift))
    if reasons:
        return True, "; ".join(reasons)
    if not chosen:
        return False, ("never retrain on a new span (--retrain-on schedule: only the "
                       "schedule trains)")
    kept = []
    if "decay" in chosen:
        kept.append("no decay (" + performance.get_string_custom_property("reason") + ")")
    if "drift" in chosen:
        kept.append(f"no drift (closest: {closest_to_drift(drift)})"
                    if drift.get_int_custom_property("measured") else "drift not measured")
    return False, "; ".join(kept)


@component
def RetrainDecision(
        decision: OutputArtifact[RetrainDecisionArtifact],
        train_when: Parameter[str] = "always",
        served_model: InputArtifact[standard_artifacts.PushedModel] = None,
        performance: InputArtifact[ServedModelPerformance] = None,
        drift: InputArtifact[DataDrift] = None):
    retrain, reason = decide(train_when, served_model, performance, drift)
    record(decision, {"retrain": int(retrain), "reason": reason,
                      "train_when": train_when}, REPORT_FILE)
