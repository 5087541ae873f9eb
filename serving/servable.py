"""One loaded SavedModel version and the three ways to run it: predict, classify, regress.

Checks and messages follow TF Serving's predict_util.cc, classifier.cc and regressor.cc, so
REST and gRPC callers see the same errors. Batching, when on, sits under `_run`.
"""
import os
import time
import threading

import numpy as np

import serving  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from serving import errors
from serving.signature_runner import load_runner, tensorflow

DEFAULT_SIGNATURE = "serving_default"
CLASSIFY_INPUTS = "inputs"
CLASSIFY_CLASSES = "classes"
CLASSIFY_SCORES = "scores"
REGRESS_INPUTS = "inputs"
REGRESS_OUTPUTS = "outputs"
SERVE_TAG = "serve"
HINT_MAX_SIGNATURES = 2  # a signature hint stays a line, whatever the model exports
HINT_MAX_INPUTS = 8
HINT_MAX_NAME = 64


def dtype_name(dtype_enum: int) -> str:
    """TF's DataTypeString: DT_FLOAT -> "float", as TF Serving prints types in messages."""
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Name(dtype_enum)[3:].lower()


def read_saved_model(version_dir: str):
    """The SavedModel proto of a version: saved_model.pb, or saved_model.pbtxt as TF reads it."""
    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    binary_path = os.path.join(version_dir, "saved_model.pb")
    if os.path.exists(binary_path):
        with open(binary_path, "rb") as f:
            saved_model.ParseFromString(f.read())
    else:
        with open(os.path.join(version_dir, "saved_model.pbtxt"), encoding="utf-8") as f:
            text_format.Parse(f.read(), saved_model)
    return saved_model


def serve_meta_graph(saved_model):
    """The MetaGraph tagged 'serve', the one TF Serving loads."""
    for meta_graph in saved_model.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            return meta_graph
    raise errors.not_found(
        f"Could not find meta graph def matching supplied tags: {{ {SERVE_TAG} }}. "
        "To inspect available tag-sets in the SavedModel, please use the SavedModel CLI: "
        "`saved_model_cli`")


def read_signature_defs(version_dir: str) -> dict:
    """The signature_def map of the 'serve' MetaGraph, as GetModelMetadata reports it."""
    return dict(serve_meta_graph(read_saved_model(version_dir)).signature_def)


def _signature_debug_string(signature) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(signature)


class Servable:
    """One version of one model, loaded and ready; thread-safe."""

    def __init__(self, name: str, version: int, path: str, batcher_factory=None):
        self.name = name
        self.version = int(version)
        self.path = path
        saved_model = read_saved_model(path)
        self._signature_defs = dict(serve_meta_graph(saved_model).signature_def)
        self._runner = load_runner(path, saved_model, [SERVE_TAG], self._signature_defs)
        self._input_plans = {}  # signature -> _input_plan()
        # One batcher per signature: TF Serving batches per distinct signature too.
        self._batchers = {}
        self._batcher_factory = batcher_factory
        self._lock = threading.Lock()
        self._closed = False

    def close(self):
        """Called by the manager on unload: stops this version's batch threads."""
        with self._lock:
            self._closed = True
            batchers, self._batchers = list(self._batchers.values()), {}
        for batcher in batchers:
            batcher.close()

    # --- metadata -----------------------------------------------------------------------
    def signature_defs(self) -> dict:
        return self._signature_defs

    def signature_inputs(self, signature_name: str):
        """REST needs the input TensorInfos to decode JSON; TF Serving's GetInfoMap."""
        name = signature_name or DEFAULT_SIGNATURE
        signature = self._signature_defs.get(name)
        if signature is None:
            raise errors.invalid_argument(
                f'Serving signature name: "{name}" not found in signature def')
        return signature.inputs

    # --- predict ------------------------------------------------------------------------
    def predict(self, signature_name, inputs, output_filter=None, deadline=None):
        name, signature, aliases = self._predict_checks(signature_name, inputs, output_filter)
        outputs = self._run(name, signature, inputs, deadline)
        return {alias: outputs[alias] for alias in aliases}

    @property
    def batching(self) -> bool:
        return self._batcher_factory is not None

    def submit_predict(self, signature_name, inputs, on_done):
        """predict() for a caller that must not block (an event loop), batching on: the
        same checks, then the request queued on its signature's batcher.

        -> (task, aliases). on_done() runs on a batch thread once task.result or
        task.error is set; read the outputs with predict_outputs(). task is None once this
        version is unloaded: call predict() instead.
        """
        name, signature, aliases = self._predict_checks(signature_name, inputs, None)
        arrays = self._coerce_inputs(name, signature, inputs)
        batcher = self._batcher(name)
        return (batcher.submit(arrays, on_done) if batcher is not None else None), aliases

    @staticmethod
    def predict_outputs(task, aliases) -> dict:
        if task.error is not None:
            raise task.error
        return {alias: task.result[alias] for alias in aliases}

    def _predict_checks(self, signature_name, inputs, output_filter):
        """-> (signature key, SignatureDef, output aliases), or TF Serving's error."""
        name = signature_name or DEFAULT_SIGNATURE
        signature = self._signature_defs.get(name)
        if signature is None or not self._runner.can_run(name):
            raise errors.failed_precondition(f'Serving signature key "{name}" not found.')
        try:
            self._check_input_names(signature, inputs)
        except errors.ServingError as error:
            raise self.with_signature_hint(error, name, inputs) from None
        return name, signature, self._output_aliases(signature, output_filter)

    def _check_input_names(self, signature, inputs):
        request_inputs = set(inputs)
        signature_inputs = set(signature.inputs)
        extra = sorted(request_inputs - signature_inputs)
        missing = sorted(signature_inputs - request_inputs)
        if len(request_inputs) != len(signature_inputs) and not (
                len(request_inputs) < len(signature_inputs) and len(signature.defaults)):
            raise errors.invalid_argument(
                f"input size does not match signature: {len(request_inputs)}!="
                f"{len(signature_inputs)} len({{{','.join(sorted(request_inputs))}}}) != "
                f"len({{{','.join(sorted(signature_inputs))}}}). Sent extra: "
                f"{{{','.join(extra)}}}. Missing but required: {{{','.join(missing)}}}.")
        if extra or missing:
            raise errors.invalid_argument(
                f"Request inputs do not match required inputs for model `{self.name}`. "
                f"Send extra: {{{','.join(extra)}}}. Missing but required: "
                f"{{{','.join(missing)}}}.")

    def with_signature_hint(self, error, signature_name, input_names):
        """`error` plus which signatures take the inputs the request named, if another does.

        A request posting raw features without "signature_name" reaches serving_default,
        which takes serialized examples; TF Serving's message alone does not say where to go.
        """
        requested = self._signature_defs.get(signature_name or DEFAULT_SIGNATURE)
        unknown = set(input_names) - set(requested.inputs if requested else ())
        ranked = sorted((-len(unknown & set(signature.inputs)), key)
                        for key, signature in self._signature_defs.items()
                        if unknown & set(signature.inputs))
        if not ranked:
            return error
        takes = []
        for _, key in ranked[:HINT_MAX_SIGNATURES]:
            inputs = sorted(self._signature_defs[key].inputs)
            shown = ", ".join(_bounded(alias) for alias in inputs[:HINT_MAX_INPUTS])
            if len(inputs) > HINT_MAX_INPUTS:
                shown += f", ... ({len(inputs)} in all)"
            takes.append(f"Signature '{_bounded(key)}' takes inputs: {shown}")
        more = f" ({len(ranked) - HINT_MAX_SIGNATURES} more signatures take some of them)" \
            if len(ranked) > HINT_MAX_SIGNATURES else ""
        return errors.ServingError(
            error.code, f'{error.message} {"; ".join(takes)}{more}; pass "signature_name".')

    @staticmethod
    def _output_aliases(signature, output_filter):
        if not output_filter:
            return list(signature.outputs)
        seen = set()
        for alias in output_filter:
            if alias not in signature.outputs:
                raise errors.invalid_argument(
                    f"output tensor alias not found in signature: {alias} Outputs expected "
                    f"to be in the set {{{','.join(sorted(signature.outputs))}}}.")
            if alias in seen:
                raise errors.invalid_argument(f"duplicate output tensor alias: {alias}")
            seen.add(alias)
        return list(output_filter)

    # --- classify / regress -------------------------------------------------------------
    def _examples_signature(self, signature_name):
        """The signature a classify/regress call runs, with the checks both share."""
        name = signature_name or DEFAULT_SIGNATURE
        signature = self._signature_defs.get(name)
        if signature is None or not self._runner.can_run(name):
            raise errors.invalid_argument(f"No signature was found with the name: {name}")
        if len(signature.inputs) != 1:
            raise errors.invalid_argument("Expected one input Tensor.")
        return name, signature

    def classify(self, signature_name, serialized_examples, deadline=None):
        name, signature = self._examples_signature(signature_name)
        if len(signature.outputs) not in (1, 2):
            raise errors.invalid_argument(
                f"Expected one or two output Tensors, found {len(signature.outputs)}")
        if CLASSIFY_INPUTS not in signature.inputs:
            raise errors.invalid_argument(
                "No classification inputs found in SignatureDef: "
                + _signature_debug_string(signature))
        if (CLASSIFY_CLASSES not in signature.outputs
                and CLASSIFY_SCORES not in signature.outputs):
            raise errors.invalid_argument(
                'Expected classification signature outputs to contain at least one of '
                f'"{CLASSIFY_CLASSES}" or "{CLASSIFY_SCORES}". Signature was: '
                + _signature_debug_string(signature))
        examples = self._examples_tensor(serialized_examples)
        outputs = self._run(name, signature, {CLASSIFY_INPUTS: examples}, deadline)
        num_examples = len(examples)
        classes = outputs.get(CLASSIFY_CLASSES)
        scores = outputs.get(CLASSIFY_SCORES)
        for label, tensor, want in ((CLASSIFY_CLASSES, classes, "DT_STRING"),
                                    (CLASSIFY_SCORES, scores, "DT_FLOAT")):
            if tensor is None:
                continue
            if tensor.ndim != 2:
                raise errors.invalid_argument(
                    "Expected Tensor shape: [batch_size num_classes] but got "
                    + _shape_debug_string(tensor.shape))
            got = _dtype_enum_name(tensor)
            if got != want:
                kind = "classes" if label == CLASSIFY_CLASSES else "scores"
                raise errors.invalid_argument(
                    f"Expected {kind} Tensor of {want}. Got: {got}")
            if tensor.shape[0] != num_examples:
                kind = "classes" if label == CLASSIFY_CLASSES else "scores"
                raise errors.invalid_argument(
                    f"Expected {kind} output batch size of {num_examples}. "
                    f"Got: {tensor.shape[0]}")
        if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
            raise errors.invalid_argument(
                "Tensors class and score should match in dim_size(1). Got "
                f"{classes.shape[1]} vs. {scores.shape[1]}")
        return classes, scores

    def regress(self, signature_name, serialized_examples, deadline=None):
        name, signature = self._examples_signature(signature_name)
        if len(signature.outputs) != 1:
            raise errors.invalid_argument("Expected one output Tensor.")
        if REGRESS_INPUTS not in signature.inputs:
            raise errors.invalid_argument(
                "No regression inputs found in SignatureDef: "
                + _signature_debug_string(signature))
        if REGRESS_OUTPUTS not in signature.outputs:
            raise errors.invalid_argument(
                "No regression outputs found in SignatureDef: "
                + _signature_debug_string(signature))
        examples = self._examples_tensor(serialized_examples)
        values = self._run(name, signature, {REGRESS_INPUTS: examples}, deadline)[REGRESS_OUTPUTS]
        if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
            raise errors.invalid_argument(
                "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] "
                "but got " + _shape_debug_string(values.shape))
        if values.shape[0] != len(examples):
            raise errors.invalid_argument(
                "Input batch size did not match output batch size: "
                f"{len(examples)} vs. {values.shape[0]}")
        if _dtype_enum_name(values) != "DT_FLOAT":
            raise errors.invalid_argument(
                f"Expected output Tensor of DT_FLOAT.  Got: {_dtype_enum_name(values)}")
        return values.reshape(-1)

    @staticmethod
    def _examples_tensor(serialized_examples):
        if not serialized_examples:
            raise errors.invalid_argument("Input is empty.")
        return np.array(list(serialized_examples), dtype=object)

    # --- running the graph ----------------------------------------------------------------
    def _run(self, signature_name, signature, inputs, deadline=None):
        """Runs one signature on numpy inputs; through the batcher when batching is on."""
        arrays = self._coerce_inputs(signature_name, signature, inputs)
        if self._batcher_factory is None:
            if deadline is None:
                return self.run_signature(signature_name, arrays)
            return run_with_deadline(lambda: self.run_signature(signature_name, arrays),
                                     deadline)
        batcher = self._batcher(signature_name)
        if batcher is None:  # unloaded while this request held it: no new batch threads
            return self.run_signature(signature_name, arrays)
        return batcher.run(arrays, deadline=deadline)

    def _batcher(self, signature_name):
        """The signature's batcher, started on first use; None once closed."""
        batcher = self._batchers.get(signature_name)  # no lock: a dict read is atomic
        if batcher is not None:
            return batcher
        with self._lock:
            batcher = self._batchers.get(signature_name)
            if batcher is None and not self._closed:
                batcher = self._batcher_factory(
                    lambda batch, _name=signature_name: self.run_signature(_name, batch),
                    f"{self.name}/{self.version}/{signature_name}")
                self._batchers[signature_name] = batcher
        return batcher

    def _coerce_inputs(self, signature_name, signature, inputs):
        """Checks dtypes as a TF session does (no implicit casts), before anything is queued.

        Against the dtype the graph really takes, as the session checks it: a SignatureDef
        may say otherwise (half_plus_three's regress declares DT_FLOAT for its string
        tf_example input, and TF Serving runs it).
        """
        arrays = {}
        for index, alias, dtype_enum, want in self._input_plan(signature_name, signature):
            value = np.asarray(inputs[alias])
            is_text = value.dtype.kind in ("O", "S", "U")
            if want is object:
                if not is_text and value.size:
                    raise errors.invalid_argument(
                        f"Expects arg[{index}] to be string but "
                        f"{_numpy_dtype_name(value)} is provided")
                if value.dtype != object:
                    value = value.astype(object)
            elif is_text and value.size:
                raise errors.invalid_argument(
                    f"Expects arg[{index}] to be {dtype_name(dtype_enum)} but string is provided")
            elif value.dtype != want:
                if value.size:
                    raise errors.invalid_argument(
                        f"Expects arg[{index}] to be {dtype_name(dtype_enum)} but "
                        f"{_numpy_dtype_name(value)} is provided")
                value = value.astype(want)  # an empty list has no type yet
            arrays[alias] = value
        return arrays

    def _input_plan(self, signature_name, signature):
        """[(position, alias, DataType, numpy dtype or object for strings)] of a signature's
        inputs, worked out once: reading the SignatureDef's map and TF's dtype objects on
        every request cost as much as decoding a gRPC request's tensors."""
        plan = self._input_plans.get(signature_name)
        if plan is None:
            tf = tensorflow()
            plan = []
            for index, alias in enumerate(sorted(signature.inputs)):
                # The dtype the graph's tensor takes; the SignatureDef's if it has none.
                dtype_enum = (self._runner.input_dtype(signature_name, alias)
                              or signature.inputs[alias].dtype)
                want = tf.dtypes.as_dtype(dtype_enum)
                plan.append((index, alias, dtype_enum,
                             object if want == tf.string else np.dtype(want.as_numpy_dtype)))
            self._input_plans[signature_name] = plan
        return plan

    def run_signature(self, signature_name, arrays):
        """Runs the signature once on checked arrays; TF errors become TF Serving's codes."""
        return self._runner.run(signature_name, arrays)


def run_with_deadline(work, deadline: float):
    """Runs work() on this thread and answers as a TF session with RunOptions.timeout_in_ms
    does: DEADLINE_EXCEEDED once `deadline` (time.monotonic()) has passed, before or after
    the run. It is not handed to another thread so as to give up mid-run: that hop cost
    every call more than it saved, and the caller's transport ends a late call on time
    anyway (a gRPC client's own deadline; REST's event loop answers 504)."""
    if deadline - time.monotonic() <= 0:
        raise errors.deadline_exceeded()
    outputs = work()
    if deadline - time.monotonic() < 0:
        raise errors.deadline_exceeded()
    return outputs


def _dtype_enum_name(array) -> str:
    if array.dtype.kind in ("O", "S", "U"):
        return "DT_STRING"
    tf = tensorflow()
    return "DT_" + tf.dtypes.as_dtype(array.dtype).name.upper().replace("FLOAT32", "FLOAT") \
        .replace("FLOAT64", "DOUBLE")


def _numpy_dtype_name(array) -> str:
    from tensorflow.core.framework import types_pb2

    return dtype_name(types_pb2.DataType.Value(_dtype_enum_name(array)))


def _bounded(name: str) -> str:
    return name if len(name) <= HINT_MAX_NAME else name[:HINT_MAX_NAME] + "..."


def _shape_debug_string(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"
