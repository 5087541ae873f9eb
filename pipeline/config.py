"""Every knob of the pipeline, in one place, with defaults that work on a laptop.

`run_local.py` and the tests override fields by flag; environment variables
TAXI_DATA_DIR and TAXI_OUTPUT_DIR move the data and the outputs, TAXI_METADATA
the ML Metadata store (docs/metadata-store.md).
"""
import dataclasses
import hashlib
import os
import pathlib

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent
PIPELINE_NAME = "taxi_tips"
MODEL_NAME = "taxi_tips"  # the name TF Serving serves the pushed model under

# ExampleGen matches this under the data folder; `{SPAN}` is the span number.
INPUT_PATTERN = "span-{SPAN}/*.csv"
SCHEMA_DIR = PROJECT_ROOT / "pipeline" / "schema"  # holds the curated schema.pbtxt

# Output layout under the output folder (read by the lineage tool and tests too).
METADATA_FILE = "metadata.sqlite"
PIPELINE_ROOT_DIR = "pipeline_root"
SERVING_MODEL_DIR = "serving_model"
SERVING_CONFIG_FILE = "serving_config/models.config"  # see the Release block below
LOG_FILE = "logs/run_local.log"

# Python entry points the Transform and Trainer components import.
PREPROCESSING_FN = "models.preprocessing.preprocessing_fn"
RUN_FN = "models.training.run_fn"
MODEL_CODE_DIR = PROJECT_ROOT / "models"

# Beam's local runner: one in-memory worker is fastest on data of this size.
LOCAL_RUNNER_ARGS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
# --setup_file names this project as the package Beam workers need. The local
# runner ignores it, but without it TFX copies its own installation and builds
# an sdist of it before every Beam component (2.7 s each, 49 MB left in /tmp).
# cloudpickle: dill, Beam's default, resets a logger's level on every (un)pickling,
# which clears the cache of each of TensorFlow's ~1,000 loggers (10 s a run).
BEAM_PIPELINE_ARGS = LOCAL_RUNNER_ARGS + [f"--setup_file={PROJECT_ROOT / 'setup.py'}",
                                          "--pickle_library=cloudpickle"]
# `run_local.py --beam-arg` appends to these (docs/beam.md): Beam takes the last
# value of a flag, so the user's win; the two above stay, as every runner needs them.

# --- Kubeflow Pipelines v2 / Vertex AI (pipeline/run_kubeflow.py, docs/kubeflow.md) ---
# KFP accepts only [a-z0-9-] in a pipeline's name.
KUBEFLOW_PIPELINE_NAME = "taxi-tips"
# Where the Dockerfile copies this project in the image: the paths the compiled
# pipeline names (the curated schema, Beam's --setup_file) are under it.
IMAGE_PROJECT_ROOT = "/taxi_tips"
# BEAM_PIPELINE_ARGS with the image's setup.py: each task runs Beam's local runner.
IMAGE_BEAM_PIPELINE_ARGS = LOCAL_RUNNER_ARGS + [f"--setup_file={IMAGE_PROJECT_ROOT}/setup.py",
                                                "--pickle_library=cloudpickle"]
# --- end of Kubeflow ---


def in_image(path: pathlib.Path) -> str:
    """Where one of this project's files is inside the image (IMAGE_PROJECT_ROOT)."""
    return f"{IMAGE_PROJECT_ROOT}/{path.relative_to(PROJECT_ROOT).as_posix()}"


@dataclasses.dataclass
class PipelineConfig:
    data_dir: pathlib.Path = pathlib.Path(
        os.environ.get("TAXI_DATA_DIR", PROJECT_ROOT / "data" / "spans"))
    output_dir: pathlib.Path = pathlib.Path(
        os.environ.get("TAXI_OUTPUT_DIR", PROJECT_ROOT / "outputs"))
    # The ML Metadata store as --metadata takes it (metadata/connection.py); None:
    # $TAXI_METADATA, else SQLite at metadata_path.
    metadata_store: str | None = None
    # Train on a rolling window of the latest spans (quarters).
    training_window_spans: int = 4
    # Hash buckets of the train/eval split that ExampleGen makes of each span.
    train_buckets: int = 3
    eval_buckets: int = 1
    # TFT's analyzer cache lets Transform analyze only a window's new span, but it
    # costs Beam stages per span and analyzer: slower than analyzing four spans
    # of this size again (benchmarks/pipeline_results.md). Worth it on big spans.
    analyzer_cache: bool = False
    train_steps: int = 1000
    eval_steps: int = 50
    hyperparameters: dict = dataclasses.field(default_factory=lambda: {
        "hidden_units": [32, 16], "learning_rate": 0.005, "batch_size": 64})
    # The Evaluator blesses a model only above these bars...
    min_auc: float = 0.75
    min_accuracy: float = 0.80
    # ...and only if its AUC is at most this much below the serving model's.
    max_auc_drop_vs_baseline: float = 0.01
    # --- Model validation (docs/delivery.md#model-validation) ---
    # The bar vs the serving model is judged on TFMA's 95% confidence interval of
    # candidate minus baseline on the same eval trips: a model is blocked only if
    # the whole interval is below -max_auc_drop_vs_baseline. False: on the point
    # estimate, as TFMA alone does. JACKKNIFE (20 buckets) or POISSON_BOOTSTRAP
    # (20 resamples); TFMA 0.47 fixes both counts and the 95% level.
    judge_change_on_interval: bool = True
    confidence_interval_method: str = "JACKKNIFE"
    # TFMA computes AUC from a confusion matrix at this many thresholds, and with
    # intervals on it also computes one for every cell of it, in Python, on each
    # of the 20 samples: with TFMA's default 10,000 the Evaluator took 20x as long
    # as without intervals, with 1,000 3x (docs/delivery.md). On the tests' trips
    # the AUC was the same to three decimals.
    auc_num_thresholds: int = 1000
    # --- end of model validation ---
    # The served model has decayed on a new span when its AUC there is below
    # min_auc, or more than this below its AUC at push time.
    max_decay_auc_drop: float = 0.05
    slice_features: tuple = ("trip_start_hour", "payment_type")
    enable_cache: bool = True
    # Every Beam-powered component's arguments: the defaults above, then --beam-arg's.
    beam_pipeline_args: tuple = tuple(BEAM_PIPELINE_ARGS)
    # --- Release (pipeline/release/, docs/delivery.md) ----------------------------
    # The Pusher only writes a version; the release step labels it `canary` in TF
    # Serving's model config file (serving_config_path), which the server follows
    # (--model_config_file), and promotes it to `stable` by hand or when it served
    # at least canary_min_requests within these bounds (read from the server's
    # Prometheus page at serving_metrics_url; None: the pipeline and the watcher
    # do not ask the server, `python -m pipeline.release check` does).
    serving_metrics_url: str | None = None
    canary_min_requests: int = 100
    canary_max_error_rate: float = 0.01  # failed / all requests of the canary version
    canary_max_p99_ms: float = 500.0
    # How long the release step waits for the server to load a new version before
    # it leaves the label move to the next check.
    canary_load_timeout_seconds: float = 60.0
    # Version folders kept on disk besides the labelled and loaded ones.
    versions_kept: int = 3
    # --- end of Release ---------------------------------------------------------
    # Where the Pusher writes versions (TF Serving's model base path): None, the
    # local serving folder (an atomic rename per version); or a gs:// or s3://
    # URI, written through tf.io.gfile with saved_model.pb last (docs/remote-push.md).
    push_destination: str | None = None
    # Continuous training (`--watch`): what may trigger a retraining (see
    # pipeline/triggers.py), how often to look for new spans, and the schedule.
    retrain_on: tuple = ("new-span",)
    check_every_seconds: float = 60.0
    retrain_every_seconds: float | None = None  # no schedule by default
    # The watcher can judge the model server's request logs itself (the serving
    # monitor's check, once each window is over) and retrain on a skew alarm.
    request_logs: pathlib.Path | None = None
    serving_window_seconds: float = 3600.0  # as `python -m pipeline.monitor --window`
    # --- Infra validation (pipeline/components/infra_validator.py) ---
    # The candidate is served by a local model server and called through the
    # API, with this many eval-split rows per signature (also its warmup requests).
    infra_request_rows: int = 5
    # Then a load test: requests at this rate for this long must answer with a
    # p99 latency within the target and at most this many failures.
    infra_p99_target_ms: float = 100.0
    infra_load_rate: float = 20.0  # requests per second
    infra_load_seconds: float = 3.0
    infra_max_failed_requests: int = 0
    # Push the model with its requests as TF Serving warmup requests.
    infra_warmup: bool = True
    infra_max_loading_seconds: int = 120  # for the server to start and load it
    # --- end of infra validation ---

    @property
    def pipeline_root(self) -> pathlib.Path:
        return self.output_dir / PIPELINE_ROOT_DIR

    @property
    def metadata_path(self) -> pathlib.Path:
        return self.output_dir / METADATA_FILE

    @property
    def metadata_connection(self):
        """ML Metadata's ConnectionConfig: metadata_store, else $TAXI_METADATA,
        else SQLite in the output folder."""
        from metadata import connection
        return connection.choose(self.metadata_store, self.metadata_path)

    @property
    def serving_model_dir(self) -> pathlib.Path:
        """TF Serving's model base path: <this>/<integer version>/saved_model.pb."""
        return self.output_dir / SERVING_MODEL_DIR / MODEL_NAME

    @property
    def push_base_directory(self) -> str:
        """The Pusher's base directory: push_destination, or the local serving folder."""
        return self.push_destination or str(self.serving_model_dir)

    @property
    def serving_config_path(self) -> pathlib.Path:
        """TF Serving's model config file the release step maintains."""
        return self.output_dir / SERVING_CONFIG_FILE

    @property
    def log_path(self) -> pathlib.Path:
        return self.output_dir / LOG_FILE

    @property
    def schema_file(self) -> pathlib.Path:
        return SCHEMA_DIR / "schema.pbtxt"


def remote_push_destination(uri: str) -> str:
    """A --push-destination: an object store URI. A local folder is the output
    folder's serving_model/ (the release step, retention and recovery look there)."""
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if not scheme or scheme == "file" or not uri.split("://", 1)[1].strip("/"):
        raise ValueError(
            f"{uri!r} is not an object store URI such as gs://BUCKET/models/{MODEL_NAME} "
            f"or s3://BUCKET/models/{MODEL_NAME}; to serve from a local folder, choose "
            f"it with --output-dir (versions go to <output-dir>/{SERVING_MODEL_DIR}/"
            f"{MODEL_NAME})")
    return uri.rstrip("/")


def model_code_version() -> str:
    """A fingerprint of models/*.py: a code change invalidates the cached Transform
    and Trainer, and the lineage tool shows which code built a model."""
    digest = hashlib.sha256()
    for path in sorted(MODEL_CODE_DIR.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
