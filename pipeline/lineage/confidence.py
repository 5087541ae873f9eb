"""Text for the confidence intervals an Evaluator judged a model by.

The intervals are the JSON the Evaluator's executor records on the ModelBlessing
(metadata.artifacts.confidence_intervals_of); the run summary and the model trace
show them in the same words.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from metadata.artifacts import CONFIDENCE_INTERVALS_PROPERTY

# The candidate's own metrics worth an interval in one line (not example_count).
SHOWN_METRICS = ('auc', 'binary_accuracy')


def of_blessing_properties(properties: dict[str, Any]) -> Optional[dict]:
  """The intervals from a lineage ArtifactRecord's decoded properties (the
  decoding already parsed the JSON, unless it was not valid)."""
  value = properties.get(CONFIDENCE_INTERVALS_PROPERTY)
  return json.loads(value) if isinstance(value, str) else value


def _interval(level: Optional[float], lower, upper, signed: bool = False) -> str:
  if lower is None or upper is None:
    return ''
  number = '{:+.3f}' if signed else '{:.3f}'
  return (f' ({level * 100:.0f}% CI {number.format(lower)} to '
          f'{number.format(upper)})')


def candidate_text(intervals: dict) -> str:
  """e.g. 'auc 0.919 (95% CI 0.880 to 0.950), binary_accuracy 0.842 (...)'"""
  parts = []
  for name in SHOWN_METRICS:
    if name in intervals.get('candidate', {}):
      value, lower, upper = intervals['candidate'][name]
      parts.append(f'{name} {value:.3f}{_interval(intervals["level"], lower, upper)}')
  return ', '.join(parts)


def verdict(change: dict) -> str:
  if change['significantly_worse']:
    return ('significantly worse than the bar: not blessed' if change['lower'] is not None
            else 'worse than the bar (point estimate, no interval): not blessed')
  if change['diff'] < change['bar']:
    return 'below the bar, but not significantly: allowed'
  return 'not worse than the bar'


def change_text(change: dict, level: Optional[float]) -> str:
  """e.g. 'auc vs baseline -0.004 (95% CI -0.030 to +0.020), bar -0.010: not
  worse than the bar'"""
  return (f'{change["metric"]} vs baseline {change["diff"]:+.3f}'
          f'{_interval(level, change["lower"], change["upper"], signed=True)}, '
          f'bar {change["bar"]:+.3f}: {verdict(change)}')


def evaluation_lines(intervals: Optional[dict]) -> list[str]:
  """Lines under 'Evaluation' in the model trace."""
  if not intervals:
    return []
  if intervals['method']:
    method = intervals['method'].lower().replace('_', ' ')
    out = [f'  intervals   {method}; change bars judged on the interval']
  else:
    out = ['  intervals   off; change bars judged on the point estimate']
  if candidate_text(intervals):
    out.append(f'  candidate   {candidate_text(intervals)}')
  out += [f'  change      {change_text(change, intervals["level"])}'
          for change in intervals.get('changes', [])]
  return out
