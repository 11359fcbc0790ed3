"""TensorProto <-> NumPy, the way TF Serving reads requests and writes answers.

Requests: the claimed shape is checked against a byte limit *before* anything is allocated (a
TensorProto may claim a shape far larger than the values it carries; TensorFlow fills the rest
with the last value). Answers: typed `*_val` fields (`Tensor::AsProtoField`, TF Serving's default
for Predict), not `tensor_content`.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from serving.errors import InvalidArgument, ResourceExhausted

# TensorProto's typed value field for each dtype this server reads and writes (tensor.proto: the
# small integer types share int_val).
_FIELDS: dict[str, tuple[int, ...]] = {
    "float_val": (types_pb2.DT_FLOAT,), "double_val": (types_pb2.DT_DOUBLE,), "half_val": (types_pb2.DT_HALF,),
    "int_val": (types_pb2.DT_INT8, types_pb2.DT_INT16, types_pb2.DT_INT32, types_pb2.DT_UINT8, types_pb2.DT_UINT16),
    "int64_val": (types_pb2.DT_INT64,), "uint32_val": (types_pb2.DT_UINT32,), "uint64_val": (types_pb2.DT_UINT64,),
    "bool_val": (types_pb2.DT_BOOL,), "string_val": (types_pb2.DT_STRING,),
}
# dtype enum -> (numpy dtype, typed value field); the NumPy dtype is TensorFlow's own (DT_STRING -> object)
_TYPES: dict[int, tuple[np.dtype, str]] = {
    dtype: (np.dtype(tf.dtypes.as_dtype(dtype).as_numpy_dtype), field)
    for field, dtypes in _FIELDS.items() for dtype in dtypes}
# numpy dtype -> dtype enum for answers; strings (object arrays) are handled apart
_BY_NUMPY = {np_dtype: dtype for dtype, (np_dtype, _) in _TYPES.items() if dtype != types_pb2.DT_STRING}


def numpy_dtype(dtype: int) -> np.dtype:
    if dtype not in _TYPES:
        name = types_pb2.DataType.Name(dtype) if dtype in types_pb2.DataType.values() else dtype
        raise InvalidArgument(f"tensor type {name} is not supported")
    return _TYPES[dtype][0]


def dtype_name(dtype: int) -> str:
    """`float`, `int32`, `string`...: the names TensorFlow's DataTypeString uses."""
    try:
        return types_pb2.DataType.Name(dtype)[3:].lower()
    except ValueError:
        return str(dtype)


def to_array(proto: tensor_pb2.TensorProto, max_bytes: int, name: str = "") -> np.ndarray:
    """Decode a request tensor, refusing a claimed size over `max_bytes` before allocating it."""
    dtype = numpy_dtype(proto.dtype)
    dims = [d.size for d in proto.tensor_shape.dim]
    if proto.tensor_shape.unknown_rank:
        raise InvalidArgument(f"input '{name}': a request tensor needs a known shape")
    if any(d < 0 for d in dims):
        raise InvalidArgument(f"input '{name}': negative dimension in shape {dims}")
    count = 1
    for d in dims:
        count *= d
        if count * max(dtype.itemsize, 1) > max_bytes:
            raise ResourceExhausted(f"input '{name}' claims shape {dims}, over the {max_bytes}-byte "
                                    "limit for one tensor")
    if proto.dtype == types_pb2.DT_STRING:
        values = list(proto.string_val)
        if sum(len(v) for v in values) > max_bytes:
            raise ResourceExhausted(f"input '{name}' is over the {max_bytes}-byte limit for one tensor")
        return _fill(np.array(values, dtype=object), count, dims, name)
    if proto.tensor_content:
        if len(proto.tensor_content) != count * dtype.itemsize:
            raise InvalidArgument(f"input '{name}': tensor_content holds {len(proto.tensor_content)} bytes, "
                                  f"shape {dims} of {dtype_name(proto.dtype)} needs {count * dtype.itemsize}")
        return np.frombuffer(proto.tensor_content, dtype=dtype).reshape(dims).copy()
    field = _TYPES[proto.dtype][1]
    values = getattr(proto, field)
    if proto.dtype == types_pb2.DT_HALF:
        array = np.array(values, dtype=np.uint16).view(np.float16)
    else:
        array = np.array(values, dtype=dtype)
    return _fill(array, count, dims, name)


def _fill(values: np.ndarray, count: int, dims: list[int], name: str) -> np.ndarray:
    """TensorFlow's rule for typed fields: no values = zeros, fewer = the last one repeated."""
    n = len(values)
    if n == count:
        return values.reshape(dims)
    if n > count:
        raise InvalidArgument(f"input '{name}': {n} values for shape {dims} ({count} elements)")
    if n == 0:
        out = np.zeros(count, dtype=values.dtype) if values.dtype != object else np.full(count, b"", dtype=object)
    else:
        out = np.empty(count, dtype=values.dtype)
        out[:n] = values
        out[n:] = values[-1]
    return out.reshape(dims)


def fill_proto(proto: tensor_pb2.TensorProto, array: np.ndarray) -> None:
    """Write `array` into an empty TensorProto in place, e.g. a response's `outputs[key]`: one
    round of field writes instead of building a message and copying it in (per-request cost)."""
    array = np.asarray(array)
    dims = proto.tensor_shape.dim
    for d in array.shape:
        dims.add(size=d)
    kind = array.dtype.kind
    if kind in "OSU":
        proto.dtype = types_pb2.DT_STRING
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in array.reshape(-1))
        return
    dtype = _BY_NUMPY.get(array.dtype)
    if dtype is None:
        raise InvalidArgument(f"cannot return a tensor of type {array.dtype}")
    proto.dtype = dtype
    if dtype == types_pb2.DT_HALF:
        proto.half_val.extend(array.reshape(-1).view(np.uint16).tolist())
    else:
        getattr(proto, _TYPES[dtype][1]).extend(array.reshape(-1).tolist())


# Types tf.make_tensor_proto writes as raw bytes in `tensor_content` (not bool, half or strings).
_CONTENT_TYPES = frozenset(d for d in _BY_NUMPY if d not in (np.dtype(np.bool_), np.dtype(np.float16)))


def fill_request_proto(proto: tensor_pb2.TensorProto, array: np.ndarray) -> bool:
    """A request tensor as `tf.make_tensor_proto` writes it for a NumPy array -- more than one
    number as raw bytes in `tensor_content`, bytes in `string_val` -- without its generic Python path
    (a client pays that per request). False, and nothing written, for anything else."""
    if not isinstance(array, np.ndarray) or not array.dtype.isnative:
        return False
    if array.dtype in _CONTENT_TYPES and array.size > 1:  # one value: TF writes a typed field
        proto.dtype = _BY_NUMPY[array.dtype]
        proto.tensor_content = array.tobytes()
    elif array.dtype.kind in "SO" and array.size and all(isinstance(v, bytes) for v in array.flat):
        proto.dtype = types_pb2.DT_STRING
        proto.string_val.extend(array.flat)
    else:
        return False
    dims = proto.tensor_shape.dim
    for d in array.shape:
        dims.add(size=d)
    return True
