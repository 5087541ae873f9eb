"""TFX's InfraValidator without Docker or Kubernetes: the model server runs as
a child process on the candidate model (pipeline/components/model_server_process.py).

It writes TFX's own InfraBlessing, as tfx/components/infra_validator/executor.py
does (an INFRA_BLESSED or INFRA_NOT_BLESSED file, custom property `blessed`;
with RequestSpec.make_warmup a model copy with its warmup requests and
`has_model`, which the Pusher pushes), and on top: every client signature
checked through the API, a short load test, and why a model failed.
"""
import json
import os
import tempfile
import time

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.proto import infra_validator_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import io_utils, path_utils, proto_utils

from pipeline.components import (check_record, infra_requests, load_test, model_server_process,
                                 signature_checks)
from pipeline.components.infra_failure import InfraValidationFailed

# As TFX's InfraValidator executor and Pusher name them.
BLESSED_FILE, NOT_BLESSED_FILE = "INFRA_BLESSED", "INFRA_NOT_BLESSED"
BLESSED, HAS_MODEL = "blessed", "has_model"
RESULT_FILE = "infra_validation.json"  # the recorded values, for people and lineage
SERVER_LOG_FILE = "model_server.log"
DEFAULT_MAX_LOADING_SECONDS = 300  # TFX's default

# The load test's knobs: not in TFX's ValidationSpec, so parameters of their own.
P99_TARGET_MS, LOAD_RATE, LOAD_SECONDS, MAX_FAILED_REQUESTS = (
    "p99_target_ms", "load_rate", "load_seconds", "max_failed_requests")


class InfraValidatorWithLoadTestSpec(standard_component_specs.InfraValidatorSpec):
    """TFX's InfraValidator spec plus the load test's targets (part of the cache
    key, so a new target validates the model again)."""
    PARAMETERS = {
        **standard_component_specs.InfraValidatorSpec.PARAMETERS,
        P99_TARGET_MS: ExecutionParameter(type=float),
        LOAD_RATE: ExecutionParameter(type=float),
        LOAD_SECONDS: ExecutionParameter(type=float),
        MAX_FAILED_REQUESTS: ExecutionParameter(type=int),
    }


def _proto(json_text, message):
    if json_text:
        proto_utils.json_to_proto(json_text, message)
    return message


def write_warmup_model(blessing, model_path: str, requests: list) -> str:
    """TFX's warmed model: a copy of the SavedModel in the blessing, with the
    requests as PredictionLogs in assets.extra/tf_serving_warmup_requests."""
    warmed = path_utils.stamped_model_path(blessing.uri)
    io_utils.copy_dir(src=model_path, dst=warmed)
    io_utils.write_tfrecord_file(path_utils.warmup_file_path(warmed),
                                 *[infra_requests.prediction_log(r) for r in requests])
    return warmed


def mark(blessing, blessed: bool, values: dict) -> None:
    """TFX's blessing file and property, plus every measured value."""
    io_utils.write_string_file(
        os.path.join(blessing.uri, BLESSED_FILE if blessed else NOT_BLESSED_FILE), "")
    check_record.record(blessing, {BLESSED: blessed, **{
        name: value for name, value in values.items() if value is not None}}, RESULT_FILE)


class SubprocessInfraValidatorExecutor(base_executor.BaseExecutor):
    """Builds the requests, starts the server once per try, checks the
    signatures, runs the load test, and records the outcome on the blessing."""

    def Do(self, input_dict, output_dict, exec_properties):
        model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
        examples = artifact_utils.get_single_instance(
            input_dict[standard_component_specs.EXAMPLES_KEY])
        blessing = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.BLESSING_KEY])
        serving_spec = _proto(exec_properties[standard_component_specs.SERVING_SPEC_KEY],
                              infra_validator_pb2.ServingSpec())
        validation_spec = _proto(exec_properties.get(standard_component_specs.VALIDATION_SPEC_KEY),
                                 infra_validator_pb2.ValidationSpec())
        request_spec = _proto(exec_properties[standard_component_specs.REQUEST_SPEC_KEY],
                              infra_validator_pb2.RequestSpec())
        model_path = path_utils.serving_model_path(
            model.uri, path_utils.is_old_model_artifact(model))
        values = {"p99_target_ms": float(exec_properties[P99_TARGET_MS]),
                  "load_rate_rps": float(exec_properties[LOAD_RATE]),
                  "load_seconds": float(exec_properties[LOAD_SECONDS]),
                  "max_failed_requests": int(exec_properties[MAX_FAILED_REQUESTS])}
        started = time.time()
        try:
            self._validate(model, examples, blessing, model_path, serving_spec,
                           validation_spec, request_spec, values)
            blessed, values["reason"] = True, ""
        except InfraValidationFailed as failure:
            blessed, values["reason"] = False, str(failure)
            values.pop(HAS_MODEL, None)  # nothing for the Pusher to push
            warmed = path_utils.stamped_model_path(blessing.uri)
            if os.path.isdir(warmed):
                io_utils.delete_dir(warmed)
        values["validation_seconds"] = round(time.time() - started, 2)
        mark(blessing, blessed, values)
        logging.info("InfraValidator: %s", json.dumps({"blessed": blessed, **values}))

    def _validate(self, model, examples, blessing, model_path, serving_spec, validation_spec,
                  request_spec, values: dict) -> None:
        """Adds what it measures to `values` (also on a failure); raises
        InfraValidationFailed with the reason."""
        model_name = serving_spec.model_name
        try:
            by_signature = infra_requests.build(model_name, model, examples, model_path,
                                                request_spec)
        except ValueError as error:
            raise InfraValidationFailed(f"no requests could be built: {error}") from None
        requests = [r for signature_requests in by_signature.values() for r in signature_requests]
        values.update({"signatures": ",".join(by_signature), "requests_per_signature":
                       min(len(r) for r in by_signature.values())})
        served_path = model_path
        if request_spec.make_warmup:
            # The server loads the very model the Pusher will push, warmup file included.
            served_path = write_warmup_model(blessing, model_path, requests)
            values.update({HAS_MODEL: 1, "warmup_requests": len(requests)})
        tries = validation_spec.num_tries or 1
        for attempt in range(1, tries + 1):
            try:
                return self._validate_once(served_path, model_name, blessing, validation_spec,
                                           requests, by_signature, values, attempt)
            except Exception as failure:  # as TFX's executor: any error fails this try
                logging.exception("Infra validation try %d/%d failed", attempt, tries)
                if attempt == tries:
                    if isinstance(failure, InfraValidationFailed):
                        raise
                    raise InfraValidationFailed(
                        f"{type(failure).__name__}: {failure}") from failure
        raise AssertionError("not reached")

    def _validate_once(self, served_path, model_name, blessing, validation_spec, requests,
                       by_signature, values, attempt) -> None:
        log_name = SERVER_LOG_FILE if attempt == 1 else f"model_server.try-{attempt}.log"
        loading_seconds = validation_spec.max_loading_time_seconds or DEFAULT_MAX_LOADING_SECONDS
        with tempfile.TemporaryDirectory(prefix="infra_validation_") as work_dir, \
                model_server_process.serving(served_path, work_dir, model_name,
                                             os.path.join(blessing.uri, log_name),
                                             loading_seconds) as server:
            logging.info("InfraValidator: %s serving at %s (%s)", server.server,
                         server.address, server.why)
            values["server"] = server.server
            signature_checks.check_signatures(server.channel, model_name, by_signature)
            result = load_test.run(server.channel, requests, rate=values["load_rate_rps"],
                                   seconds=values["load_seconds"],
                                   timeout_seconds=signature_checks.REQUEST_TIMEOUT_SECONDS)
        values.update({"load_requests": result.requests, "failed_requests": result.failed,
                       "latency_p50_ms": result.p50_ms, "latency_p99_ms": result.p99_ms})
        result.judge(values["p99_target_ms"], values["max_failed_requests"])


class InfraValidator(base_component.BaseComponent):
    """TFX's component (its spec, artifacts and blessing) with this module's
    executor and the load test's targets, which TFX's spec has no place for. Not
    a subclass of TFX's InfraValidator: Kubeflow's V2 compiler refuses that class
    by type. The ServingSpec names TF Serving and leaves `serving_platform`
    unset: the platform is a local child process."""
    SPEC_CLASS = InfraValidatorWithLoadTestSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(SubprocessInfraValidatorExecutor)

    def __init__(self, model, examples, serving_spec, request_spec, validation_spec,
                 p99_target_ms: float, load_rate: float, load_seconds: float,
                 max_failed_requests: int = 0):
        spec = InfraValidatorWithLoadTestSpec(
            model=model, examples=examples,
            blessing=types.Channel(type=standard_artifacts.InfraBlessing),
            serving_spec=serving_spec, validation_spec=validation_spec,
            request_spec=request_spec, p99_target_ms=p99_target_ms, load_rate=load_rate,
            load_seconds=load_seconds, max_failed_requests=max_failed_requests)
        # TFX's __init__ would build its own spec; the base class takes ours.
        base_component.BaseComponent.__init__(self, spec=spec)
