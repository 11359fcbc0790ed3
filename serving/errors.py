"""The statuses a request can end in, with TF Serving's gRPC codes and REST HTTP statuses.

One table, so gRPC and REST can never disagree: the HTTP status of each code is the one
`ToHTTPStatusCode` in tensorflow_serving/model_servers/http_server.cc gives it.
"""
from __future__ import annotations

import grpc


class Error(Exception):
    """Base of every error this package raises: a caller of the server library catches its errors
    with one clause. The package depends on nothing of the project, so its base is its own."""


class ServingError(Error):
    """A request failed with `code`; the message is what the client reads."""

    code = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)


def _status_error(code: grpc.StatusCode) -> type[ServingError]:
    """The ServingError subclass for one status, named as TF Serving's `error::Code` spells it
    (INVALID_ARGUMENT -> InvalidArgument), so callers can raise and catch by status."""
    name = code.name.title().replace("_", "")
    return type(name, (ServingError,), {"code": code, "__module__": __name__,
                                        "__doc__": f"A request failed with {code.name}."})


InvalidArgument = _status_error(grpc.StatusCode.INVALID_ARGUMENT)
NotFound = _status_error(grpc.StatusCode.NOT_FOUND)
FailedPrecondition = _status_error(grpc.StatusCode.FAILED_PRECONDITION)
ResourceExhausted = _status_error(grpc.StatusCode.RESOURCE_EXHAUSTED)
Unimplemented = _status_error(grpc.StatusCode.UNIMPLEMENTED)
DeadlineExceeded = _status_error(grpc.StatusCode.DEADLINE_EXCEEDED)
Unavailable = _status_error(grpc.StatusCode.UNAVAILABLE)


HTTP_STATUS: dict[grpc.StatusCode, int] = {
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

_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def from_tf_error(error: Exception) -> ServingError:
    """A TensorFlow OpError raised by a session run, as the status TF Serving would return.

    TF error codes are the gRPC code numbers. Only the first line is kept: the rest names graph
    nodes, which say nothing to a client.
    """
    code = _BY_NUMBER.get(getattr(error, "error_code", 2), grpc.StatusCode.UNKNOWN)
    message = (getattr(error, "message", None) or str(error)).split("\n")[0].strip()
    result = ServingError(message)
    result.code = code
    return result
