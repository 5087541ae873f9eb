"""Plain typed records returned by the lineage queries.

They hold copies of what ML Metadata stores, already decoded (no protos), so
every formatter can render them and `dataclasses.asdict` turns them into JSON.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional


@dataclasses.dataclass
class ArtifactRecord:
  id: int
  type: str
  uri: str
  state: str
  created: float  # seconds since the epoch
  properties: dict[str, Any]  # properties and custom properties, decoded
  producer_node: Optional[str] = None  # e.g. "Trainer"


@dataclasses.dataclass
class ExecutionRecord:
  id: int
  node: str  # the pipeline node id, e.g. "Trainer"
  type: str
  state: str  # COMPLETE, CACHED, FAILED, RUNNING, ...
  started: float
  duration_s: float
  run: Optional[str]  # name of the pipeline_run context
  properties: dict[str, Any]
  # For a CACHED execution: the execution that really computed its outputs.
  cache_source: Optional[int] = None

  @property
  def cached(self) -> bool:
    return self.state == 'CACHED'


@dataclasses.dataclass
class Edge:
  artifact: int
  execution: int
  kind: str  # "input" (artifact -> execution) or "output" (execution -> artifact)
  key: str  # the component's input or output name, e.g. "examples"


@dataclasses.dataclass
class LineageGraph:
  roots: list[str]  # node keys, "a<id>" for artifacts, "e<id>" for executions
  artifacts: dict[int, ArtifactRecord]
  executions: dict[int, ExecutionRecord]
  edges: list[Edge]


@dataclasses.dataclass
class RunRecord:
  id: int  # the pipeline_run context id
  name: str
  pipeline: str
  started: float
  duration_s: float
  status: str  # COMPLETE, FAILED, RUNNING, STOPPED, ABANDONED or CANCELED
  executions: int
  cached: int
  nodes: list[str]  # node ids that ran (or came from cache) in the run
  pushed_version: Optional[str]
  pushed_model: Optional[int]  # PushedModel artifact id
  # True when a cached Pusher only re-used an earlier push: nothing new served.
  pushed_reused: bool = False
  # Why the run started and how it ended, as the runner recorded them on the
  # run's context (metadata/runs.py); None in stores older than that.
  trigger: Optional[str] = None  # "new span 14", "schedule", "decay", ...
  trigger_detail: Optional[str] = None  # e.g. "span 15: decay: auc 0.61 ..."
  span: Optional[int] = None  # the span the run ingested
  outcome: Optional[str] = None  # "pushed", "failed", "abandoned", ...
  outcome_detail: Optional[str] = None  # the version, the error, ...
  # For a run that failed, stopped or was abandoned: the reason in one text
  # (outcome_detail, else why its executions were canceled, else TFX's error).
  why: Optional[str] = None


@dataclasses.dataclass
class DataFile:
  path: str
  size: int
  mtime: int


@dataclasses.dataclass
class SpanRecord:
  examples: int  # Examples artifact id
  span: Optional[int]
  version: Optional[int]
  split_names: list[str]
  input_base: Optional[str]
  patterns: list[str]
  fingerprint: Optional[str]  # as recorded by ExampleGen at ingestion
  files: list[DataFile]  # the files matching the patterns today
  fingerprint_now: Optional[str]  # recomputed the same way from those files
  produced_by: Optional[int]  # ExampleGen execution that read the files
  ingestion: Optional[ExecutionRecord] = None  # that execution


@dataclasses.dataclass
class Threshold:
  metric: str
  lower: Optional[float] = None
  upper: Optional[float] = None
  change_direction: Optional[str] = None
  change_absolute: Optional[float] = None
  change_relative: Optional[float] = None
  slices: str = 'all slices'  # which slices it applies to


@dataclasses.dataclass
class EvaluationRecord:
  execution: int
  blessing: Optional[int]  # ModelBlessing artifact id
  evaluation: Optional[int]  # ModelEvaluation artifact id
  blessed: Optional[bool]
  metrics: dict[str, float]  # overall slice, candidate model
  baseline_metrics: dict[str, float]
  thresholds: list[Threshold]
  baseline_model: Optional[int]  # Model artifact id compared against
  baseline_pushed_versions: list[str]
  # What the Evaluator judged the change bars on (lineage/confidence.py).
  confidence_intervals: Optional[dict] = None


@dataclasses.dataclass
class TrainingRecord:
  execution: int
  model: int
  train_steps: Optional[int]
  eval_steps: Optional[int]
  hyperparameters: dict[str, Any]  # custom_config plus a HyperParameters input
  code: dict[str, str]  # module_file / module_path / run_fn, as recorded
  code_version: Optional[str]


@dataclasses.dataclass
class TransformRecord:
  execution: int
  transform_graph: int  # TransformGraph artifact id
  uri: str
  code: dict[str, str]  # preprocessing_fn / module_file / module_path
  code_version: Optional[str]


@dataclasses.dataclass
class AnomaliesRecord:
  artifact: int
  produced_by: Optional[int]
  statistics: int  # the ExampleStatistics artifact that was validated
  anomalies: dict[str, list[str]]  # split -> "feature: description"


@dataclasses.dataclass
class SpanPerformance:
  """The served model measured on one new span (a DecayCheck output)."""
  artifact: int  # ServedModelPerformance artifact id
  execution: Optional[int]  # the DecayCheck that measured it
  run: Optional[str]
  span: Optional[int]
  measured: bool
  decayed: bool
  metrics: dict[str, float]  # auc, binary_accuracy on the span
  push_metrics: dict[str, float]  # the same metrics at push time
  example_count: Optional[int]
  reason: str


@dataclasses.dataclass
class FeatureDrift:
  feature: str
  distance: Optional[float]
  threshold: Optional[float]
  drifted: bool  # crossed its threshold


@dataclasses.dataclass
class SpanDrift:
  """One new span compared with the served model's training window (a
  DriftCheck output)."""
  artifact: int  # DataDrift artifact id
  execution: Optional[int]
  run: Optional[str]
  span: Optional[int]
  uri: str  # holds drift.json
  measured: bool
  drifted: bool
  drifted_features: list[str]
  features: list[FeatureDrift]


@dataclasses.dataclass
class ServingWindow:
  """The serving monitor's verdict on one time window of requests this
  version served (a ServingSkew artifact, metadata/serving_checks.py)."""
  artifact: int  # ServingSkew artifact id
  check: int  # the ServingMonitor execution that judged it
  checked_at: float  # when the check recorded it, seconds since the epoch
  window_start: int  # epoch seconds, inclusive
  window_end: int  # epoch seconds, exclusive
  requests: int
  skewed_features: list[str]  # distance above threshold
  anomalous_features: list[str]  # schema anomalies of the serving data
  distances: dict[str, float]  # every compared feature
  thresholds: dict[str, float]

  @property
  def alarm(self) -> bool:
    return bool(self.skewed_features or self.anomalous_features)


@dataclasses.dataclass
class ModelTrace:
  pushed_model: ArtifactRecord
  version: Optional[str]
  destination: Optional[str]
  model: Optional[ArtifactRecord]
  evaluation: Optional[EvaluationRecord]
  training: Optional[TrainingRecord]
  spans: list[SpanRecord]
  schemas: list[ArtifactRecord]
  statistics: list[ArtifactRecord]
  anomalies: list[AnomaliesRecord]
  graph: LineageGraph
  transform: Optional[TransformRecord] = None
  # Whether the version folder (destination) is still on disk; None when it
  # cannot be checked from here (a remote URI, or no destination recorded).
  destination_exists: Optional[bool] = None
  # Since the push: the model's metrics on every new span, in span order...
  performance: list[SpanPerformance] = dataclasses.field(default_factory=list)
  # ...and how far every new span drifted from its training window.
  drift: list[SpanDrift] = dataclasses.field(default_factory=list)
  # ...and the requests it served, as the serving monitor judged them, newest
  # window first.
  serving: list[ServingWindow] = dataclasses.field(default_factory=list)
  # Every release action of the served model (metadata/releases.py), oldest
  # first: whether this version is stable or canary now, since when and why.
  releases: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class TrainedModel:
  model: int
  trainer_execution: Optional[int]
  run: Optional[str]
  pushed_versions: list[str]


@dataclasses.dataclass
class ArtifactReport:
  artifact: ArtifactRecord
  upstream: LineageGraph
  downstream: LineageGraph
  trained_models: list[TrainedModel]  # models trained on it, with their pushes


@dataclasses.dataclass
class DiffRow:
  section: str  # "status", "inputs", "parameters", "metrics", "outputs"
  node: str
  name: str
  a: Any
  b: Any


@dataclasses.dataclass
class RunDiff:
  run_a: RunRecord
  run_b: RunRecord
  rows: list[DiffRow]
