"""serving/errors.py: one class per status, each with TF Serving's gRPC code and REST HTTP status."""
import grpc
import pytest

from serving import errors


@pytest.mark.parametrize("cls, code, http", [
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT, 400),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND, 404),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION, 400),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
    (errors.Unimplemented, grpc.StatusCode.UNIMPLEMENTED, 501),
    (errors.DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED, 504),
])
def test_each_status_class_carries_its_code_name_and_http_status(cls, code, http):
    error = cls("the message")
    assert cls.__name__ == code.name.title().replace("_", "")
    assert (error.code, error.http_status, str(error), error.message) == (code, http, "the message", "the message")
    assert isinstance(error, errors.ServingError)
    with pytest.raises(cls):
        raise error


def test_status_classes_are_distinct_so_callers_can_catch_one():
    with pytest.raises(errors.NotFound):
        try:
            raise errors.NotFound("no such model")
        except errors.InvalidArgument:
            pytest.fail("a NotFound was caught as InvalidArgument")
