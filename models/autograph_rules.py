"""Keeps TensorFlow's AutoGraph out of Keras 2's own code.

AutoGraph rewrites a traced function's Python source so that `if` and `for` on
tensors become graph ops. TF 2.16 skips the modules it knows ('tensorflow',
'keras', ...), but 'keras' there is Keras 3: Keras 2, the `tf_keras` package this
project uses, is rewritten function by function whenever a model is traced
(fit, evaluate, save). Keras' code has no control flow on tensors (it also runs as
TF1 graphs), so the rewrite changes no op and costs about 10 s of a 12 s fit.
"""
from tensorflow.python.autograph.core import config as autograph_config

# The modules whose functions AutoGraph calls as they are.
UNCONVERTED_MODULES = ("tf_keras",)


def skip_keras_2():
    """Adds tf_keras to AutoGraph's do-not-convert rules (once per process)."""
    present = {rule._prefix for rule in autograph_config.CONVERSION_RULES}  # noqa: SLF001
    missing = tuple(autograph_config.DoNotConvert(module)
                    for module in UNCONVERTED_MODULES if module not in present)
    # Rules are matched in order, so these go first.
    autograph_config.CONVERSION_RULES = missing + autograph_config.CONVERSION_RULES
