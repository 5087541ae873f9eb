"""Loads a SavedModel version and runs its signatures on numpy arrays.

Every export loads as TF Serving loads it: a session on the 'serve' MetaGraph, variables
restored, the main/init op run with the asset files, and signatures run by feeding and
fetching the tensor names of their SignatureDefs. A TF2 export that a session cannot run
falls back to its restored functions.
"""
import contextlib
import logging
import threading

from serving import errors

log = logging.getLogger("serving")

_tf = None
_tft_imported = False


def tensorflow():
    """Import TensorFlow on first use, so the CLI can fail on bad flags in milliseconds."""
    global _tf
    if _tf is None:
        import tensorflow as tf

        _tf = tf
    return _tf


def is_tf2_export(saved_model) -> bool:
    """TF's own test (tf.saved_model.load): one MetaGraph carrying an object graph.

    Anything else is what tf.saved_model.load would wrap with load_v1_in_v2, which loses the
    main op's asset feeds and fails on TF Serving's own test models; a session does not.
    """
    return (len(saved_model.meta_graphs) == 1
            and saved_model.meta_graphs[0].HasField("object_graph_def"))


def load_runner(version_dir: str, saved_model, tags, signature_defs):
    """A SessionRunner for this version (a FunctionRunner for a TF2 export that a session
    cannot run); errors are load failures.

    TF Serving runs TF2 exports through a session too, and so do we: a signature runs in
    0.19 ms there against 0.53 ms as a restored function (taxi model, one example), with
    the same outputs.
    """
    try:
        return _with_transform_ops(lambda: SessionRunner(version_dir, tags, signature_defs))
    except Exception as session_error:
        if not is_tf2_export(saved_model):
            raise
        log.warning("Loading %s in a session failed (%s); running it as TF2 functions",
                    version_dir, session_error)
        return _with_transform_ops(lambda: FunctionRunner(version_dir, tags))


def _with_transform_ops(load):
    global _tft_imported
    try:
        return load()
    except Exception:
        if _tft_imported:
            raise
        # TFX Transform graphs use custom ops that only exist once tensorflow_transform
        # is imported; importing it costs seconds, so only when a plain load fails.
        import tensorflow_transform  # noqa: F401

        _tft_imported = True
        return load()


class FunctionRunner:
    """A TF2 export: each signature is a concrete function taking keyword tensors."""

    def __init__(self, version_dir: str, tags):
        tf = tensorflow()
        self._loaded = tf.saved_model.load(version_dir, tags=list(tags))
        self._functions = dict(self._loaded.signatures)

    def can_run(self, signature_name: str) -> bool:
        return signature_name in self._functions

    def input_dtype(self, signature_name: str, alias: str):
        """The DataType enum the function takes for this input; None if it has no spec."""
        spec = self._functions[signature_name].structured_input_signature[1].get(alias)
        return spec.dtype.as_datatype_enum if spec is not None else None

    def run(self, signature_name: str, arrays: dict) -> dict:
        tf = tensorflow()
        function = self._functions[signature_name]
        specs = function.structured_input_signature[1]
        feeds = {}
        for alias, value in arrays.items():
            spec = specs.get(alias)
            dtype = spec.dtype if spec is not None else None
            feeds[alias] = tf.constant(value, dtype=dtype) if value.size or dtype is None \
                else tf.zeros(value.shape, dtype=dtype)
        with _tf_errors_as_serving_errors():
            outputs = function(**feeds)
        return {alias: tensor.numpy() for alias, tensor in outputs.items()}


class SessionRunner:
    """A TF1 export in its own graph and session; thread-safe like a TF session."""

    def __init__(self, version_dir: str, tags, signature_defs: dict):
        tf = tensorflow()
        graph = tf.Graph()
        config = tf.compat.v1.ConfigProto(
            # Exports pinned to /gpu:0 still serve on a CPU-only machine.
            allow_soft_placement=True,
            intra_op_parallelism_threads=tf.config.threading.get_intra_op_parallelism_threads(),
            inter_op_parallelism_threads=tf.config.threading.get_inter_op_parallelism_threads())
        self._session = tf.compat.v1.Session(graph=graph, config=config)
        with graph.as_default(), _quiet_v1_loader():
            # Imports the MetaGraph, restores variables, runs the main op (or legacy init
            # op) with the asset tensors fed the asset files' paths in this directory.
            tf.compat.v1.saved_model.loader.load(self._session, list(tags), version_dir)
        self._signature_defs = signature_defs
        self._callables = {}  # (signature, input aliases) -> (callable, output aliases)
        self._lock = threading.Lock()

    def can_run(self, signature_name: str) -> bool:
        return signature_name in self._signature_defs

    def input_dtype(self, signature_name: str, alias: str):
        """The DataType enum of the graph tensor this input feeds; None if there is none."""
        tensor_info = self._signature_defs[signature_name].inputs[alias]
        try:
            tensor = self._session.graph.get_tensor_by_name(tensor_info.name)
        except (KeyError, ValueError):  # a composite or unknown tensor: fails when run
            return None
        return tensor.dtype.as_datatype_enum

    def run(self, signature_name: str, arrays: dict) -> dict:
        input_aliases = tuple(sorted(arrays))
        key = (signature_name, input_aliases)
        entry = self._callables.get(key)
        if entry is None:
            with self._lock:
                entry = self._callables.get(key) or self._make_callable(signature_name,
                                                                        input_aliases)
                self._callables[key] = entry
        run, output_aliases = entry
        with _tf_errors_as_serving_errors():
            values = run(*[arrays[alias] for alias in input_aliases])
        return dict(zip(output_aliases, values))

    def _make_callable(self, signature_name, input_aliases):
        """Session::MakeCallable on tensor names, as TF Serving runs a signature.

        Unlike Session.run's feed_dict, it does not hold a fed tensor to its static
        shape: half_plus_two's "x" is [-1,1] yet TF Serving answers {"instances":[1.0]}.
        """
        from tensorflow.core.protobuf import config_pb2

        signature = self._signature_defs[signature_name]
        output_aliases = sorted(signature.outputs)
        options = config_pb2.CallableOptions(
            feed=[_tensor_name(signature_name, alias, signature.inputs[alias])
                  for alias in input_aliases],
            fetch=[_tensor_name(signature_name, alias, signature.outputs[alias])
                   for alias in output_aliases])
        with _tf_errors_as_serving_errors():
            run = self._session._make_callable_from_options(options)  # noqa: SLF001
        return run, output_aliases


def _tensor_name(signature_name, alias, tensor_info) -> str:
    if tensor_info.WhichOneof("encoding") != "name":
        raise errors.invalid_argument(
            f"Tensor {alias} of signature {signature_name} is a composite (sparse or "
            "ragged) tensor; only dense tensors can be fed or fetched")
    return tensor_info.name


@contextlib.contextmanager
def _tf_errors_as_serving_errors():
    tf = tensorflow()
    try:
        yield
    except tf.errors.OpError as e:
        raise errors.ServingError(_grpc_code_for_op_error(e), e.message) from None
    except (TypeError, ValueError) as e:
        raise errors.invalid_argument(str(e).strip()) from None


def _grpc_code_for_op_error(error):
    import grpc

    # tf.errors codes use the same numbering as gRPC status codes.
    for code in grpc.StatusCode:
        if code.value[0] == error.error_code:
            return code
    return grpc.StatusCode.INTERNAL


@contextlib.contextmanager
def _quiet_v1_loader():
    """The v1 loader is TF Serving's way to load: its deprecation notice and the saver's
    'Restoring parameters from ...' (printed twice, by TF's handler and ours) are noise
    next to the manager's own 'Loading servable version' line. Warnings still show."""
    import logging

    from tensorflow.python.util import deprecation

    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    tf_logger.setLevel(max(level, logging.WARNING))
    try:
        with deprecation.silence():
            yield
    finally:
        tf_logger.setLevel(level)
