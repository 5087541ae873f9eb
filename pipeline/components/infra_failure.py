"""Why a candidate model failed infra validation.

Every check (server start, loading, signatures, load test) raises this with a
sentence for people; the InfraValidator records it on the INFRA_NOT_BLESSED
blessing instead of failing the run, as TFX's own executor does.
"""


class InfraValidationFailed(Exception):
    """The model cannot be served as clients need it; the message says why."""
