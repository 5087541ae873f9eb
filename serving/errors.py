"""The one error type every serving layer raises: a gRPC status code plus TF Serving's message.

REST turns it into {"error": ...} with TF Serving's HTTP status; gRPC aborts with the code.
"""
import grpc

# TF Serving's ToHTTPStatusCode (model_servers/http_server.cc).
_HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


# Messages echo parts of the request; past this they are cut, so a small request can never
# make a large answer.
MAX_MESSAGE_CHARS = 16 * 1024


class ServingError(Exception):
    """A failed request: `code` is a grpc.StatusCode, `message` TF Serving's text for it."""

    def __init__(self, code: grpc.StatusCode, message: str):
        if len(message) > MAX_MESSAGE_CHARS:
            message = (message[:MAX_MESSAGE_CHARS]
                       + f"... ({len(message) - MAX_MESSAGE_CHARS} more characters)")
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS.get(self.code, 500)

    @property
    def code_name(self) -> str:
        """e.g. "INVALID_ARGUMENT", as TF Serving writes status codes in JSON and metrics."""
        return self.code.name

    def __repr__(self):
        return f"ServingError({self.code.name}, {self.message!r})"


def invalid_argument(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def failed_precondition(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.FAILED_PRECONDITION, message)


def internal(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INTERNAL, message)


# What a TF session says when RunOptions.timeout_in_ms runs out, and so TF Serving.
DEADLINE_MESSAGE = "Timed out waiting for notification"


def deadline_exceeded(message: str = DEADLINE_MESSAGE) -> ServingError:
    return ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, message)


def unavailable(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.UNAVAILABLE, message)
