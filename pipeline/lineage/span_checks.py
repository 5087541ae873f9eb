"""What the span checks record, read in one place: the artifact types and
property names of DecayCheck (the served model measured on a new span) and
DriftCheck (a new span compared with the model's training window).

The names follow the components' contract; if theirs differ once they land,
this module is the one to change (the tests build their artifacts from it too).
"""

from __future__ import annotations

from typing import Any, Optional

from pipeline.lineage.records import (ArtifactRecord, FeatureDrift,
                                      SpanDrift, SpanPerformance)

# DecayCheck: output type, and the input key of the PushedModel it measured.
PERFORMANCE_TYPE = 'ServedModelPerformance'
SERVED_MODEL_INPUT = 'pushed_model'
METRICS = ('auc', 'binary_accuracy')
PUSH_PREFIX = 'push_'  # push_auc: the metric at push time
EXAMPLE_COUNT = 'example_count'
DECAYED = 'decayed'
REASON = 'reason'
# DriftCheck: output type; it names the model version it compared against.
DRIFT_TYPE = 'DataDrift'
DRIFTED = 'drifted'
DRIFTED_FEATURES = 'drifted_features'
DISTANCE_PREFIX = 'distance:'
THRESHOLD_PREFIX = 'threshold:'
# Both.
SPAN = 'span'
MODEL_VERSION = 'model_version'
MEASURED = 'measured'


def _float(value: Any) -> Optional[float]:
  return float(value) if isinstance(value, (int, float)) else None


def _flag(properties: dict[str, Any], name: str) -> bool:
  return bool(properties.get(name))


def performance(artifact: ArtifactRecord, execution: Optional[int],
                run: Optional[str]) -> SpanPerformance:
  props = artifact.properties
  return SpanPerformance(
      artifact=artifact.id,
      execution=execution,
      run=run,
      span=props.get(SPAN),
      measured=_flag(props, MEASURED),
      decayed=_flag(props, DECAYED),
      metrics={m: float(props[m]) for m in METRICS
               if _float(props.get(m)) is not None},
      push_metrics={m: float(props[PUSH_PREFIX + m]) for m in METRICS
                    if _float(props.get(PUSH_PREFIX + m)) is not None},
      example_count=props.get(EXAMPLE_COUNT),
      reason=str(props.get(REASON) or ''),
  )


def drift(artifact: ArtifactRecord, execution: Optional[int],
          run: Optional[str]) -> SpanDrift:
  props = artifact.properties
  drifted = [f.strip() for f in str(props.get(DRIFTED_FEATURES) or '').split(',')
             if f.strip()]
  names = {key[len(prefix):] for key in props
           for prefix in (DISTANCE_PREFIX, THRESHOLD_PREFIX)
           if key.startswith(prefix)} | set(drifted)
  # The crossings first, then the others by name.
  names = sorted(names, key=lambda name: (name not in drifted, name))
  return SpanDrift(
      artifact=artifact.id,
      execution=execution,
      run=run,
      span=props.get(SPAN),
      uri=artifact.uri,
      measured=_flag(props, MEASURED),
      drifted=_flag(props, DRIFTED),
      drifted_features=drifted,
      features=[FeatureDrift(
          feature=name,
          distance=_float(props.get(DISTANCE_PREFIX + name)),
          threshold=_float(props.get(THRESHOLD_PREFIX + name)),
          drifted=name in drifted) for name in names],
  )
