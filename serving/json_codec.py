"""TF Serving's REST JSON <-> tensors and tf.Examples, per g3doc/api_rest.md and util/json_tensor.cc.

* Requests: `instances` (row format, a list of values or of objects keyed by input) or `inputs`
  (columnar), never both; values are converted to each input's dtype from the SignatureDef
  (JSON integers are fine for float inputs, NaN/Infinity literals are accepted); `{"b64": ...}`
  carries binary strings. Classify/Regress take `examples` (+ optional `context`) as tf.Examples.
* Answers: a signature with one output answers bare values (`{"predictions": [3.5, 4.0]}`), with
  several outputs objects per row; float32 is written at float32 precision (2.1, not
  2.0999999046325684); NaN and +-Infinity as those literals; outputs whose alias ends in `_bytes`
  as `{"b64": ...}`.

Errors are InvalidArgument with TF Serving's texts where its tests check them.
"""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import numpy as np
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import classification_pb2, input_pb2, regression_pb2

from serving import tensors
from serving.errors import InvalidArgument
from serving.savedmodel import Signature


def _debug(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, allow_nan=True)
    return text if len(text) <= limit else text[:limit] + "..."


def _json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "Bool"
    if isinstance(value, (int, float)):
        return "Number"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "Array"
    return "Object"


def parse_body(body: bytes) -> dict:
    """The request document; must be a JSON object."""
    if not body.strip():
        raise InvalidArgument("JSON Parse error: The document is empty")
    try:
        doc = json.loads(body)
    except RecursionError:
        raise InvalidArgument("JSON Parse error: The document is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"JSON Parse error: Invalid value. ({e})") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"JSON Value: {_debug(doc)} Is not object")
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise InvalidArgument(f"JSON Value: {_debug(doc)} not formatted correctly. "
                              "'signature_name' key must be a string value.")
    return doc


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _b64(value: dict) -> bytes:
    if not isinstance(value["b64"], str):
        raise InvalidArgument(f"JSON Value: {_debug(value)} not formatted correctly for base64 data")
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument("Unable to base64 decode") from None


def _strings(value: Any) -> Any:
    if isinstance(value, list):
        return [_strings(v) for v in value]
    if _is_b64(value):
        return _b64(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise InvalidArgument(f"JSON Value: {_debug(value)} Type: {_json_type(value)} is not of expected type: string")


_ACCEPTED_KINDS = {"f": "iuf", "i": "iu", "u": "iu", "b": "b"}


def to_tensor(value: Any, dtype: int, name: str) -> np.ndarray:
    """One input's JSON value as an array of the SignatureDef's dtype."""
    if dtype == types_pb2.DT_STRING:
        array = np.array(_strings(value), dtype=object)
        if any(not isinstance(v, bytes) for v in array.reshape(-1)):
            raise InvalidArgument(f"input '{name}': Expecting shape to be the same for every element")
        return array
    target = tensors.numpy_dtype(dtype)
    try:
        array = np.array(value)
    except ValueError:  # ragged
        raise InvalidArgument(_ragged_message(value)) from None
    if array.size == 0 and array.dtype.kind == "f":
        return array.astype(target)
    if array.dtype.kind not in _ACCEPTED_KINDS.get(target.kind, ""):
        bad = next((v for v in _flatten(value) if not _fits(v, target.kind)), value)
        raise InvalidArgument(f"JSON Value: {_debug(bad)} Type: {_json_type(bad)} is not of expected type: "
                              f"{tensors.dtype_name(dtype)}")
    with np.errstate(over="ignore", invalid="ignore"):
        return array.astype(target)


def _fits(value: Any, kind: str) -> bool:
    if kind == "f":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind in "iu":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, bool)


def _flatten(value: Any) -> Any:
    if isinstance(value, list):
        for v in value:
            yield from _flatten(v)
    else:
        yield value


def _ragged_message(rows: Any) -> str:
    if not isinstance(rows, list):
        return "Expecting shape to be the same for every element"
    shapes = []
    for row in rows:
        try:
            shapes.append(np.shape(np.array(row)))
        except ValueError:
            return "Expecting shape to be the same for every element"
    sizes = [int(np.prod(s)) for s in shapes]
    for i, (shape, size) in enumerate(zip(shapes, sizes)):
        if size != sizes[0]:
            return (f"Failed to process element: {i} of 'instances' list. "
                    f"Expecting tensor size: {sizes[0]} but got: {size}")
        if shape != shapes[0]:
            return (f"Failed to process element: {i} of 'instances' list. "
                    f"Expecting shape {list(shapes[0])} but got: {list(shape)}")
    return "Expecting shape to be the same for every element"


def predict_feeds(doc: dict, sig: Signature) -> tuple[dict[str, np.ndarray], bool]:
    """({input alias: array}, columnar?) from a :predict body."""
    if not sig.inputs:
        raise InvalidArgument(f"Failed to get input map for signature: {sig.name or 'DEFAULT'}")
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances and has_inputs:
        raise InvalidArgument(f"JSON Value: {_debug(doc)} Not formatted correctly expecting only one of "
                              "'inputs' or 'instances' keys to exist ")
    if has_instances:
        return _rows(doc, sig), False
    if has_inputs:
        return _columns(doc["inputs"], sig), True
    raise InvalidArgument("Missing 'inputs' or 'instances' key")


def _rows(doc: dict, sig: Signature) -> dict[str, np.ndarray]:
    rows = doc["instances"]
    if not isinstance(rows, list):
        raise InvalidArgument(f"JSON Value: {_debug(doc)} Expecting 'instances' to be an list/array")
    if not rows:
        raise InvalidArgument(f"JSON Value: {_debug(doc)} No values in 'instances' array")

    def is_object(v: Any) -> bool:
        return isinstance(v, dict) and not _is_b64(v)

    names = sorted(sig.inputs)
    if not is_object(rows[0]):
        if len(names) > 1:
            raise InvalidArgument("instances is a plain list, but expecting list of objects as multiple "
                                  "input tensors required as per tensorinfo_map")
        for i, row in enumerate(rows):
            if is_object(row):
                raise InvalidArgument(f"Expecting value/list but got object at item {i} of input list")
        spec = sig.inputs[names[0]]
        return {names[0]: _batch(rows, spec.dtype, names[0])}
    columns: dict[str, list] = {n: [] for n in names}
    for i, row in enumerate(rows):
        if not is_object(row):
            raise InvalidArgument(f"Expecting object but got list at item {i} of input list")
        for key in row:
            if key not in sig.inputs:
                raise InvalidArgument(f"Failed to process element: {i} key: {key} of 'instances' list. "
                                      f"Error: JSON object: does not have named input: {key}")
        if set(row) != set(names):
            raise InvalidArgument(f"Failed to process element: {i} of 'instances' list. JSON object: "
                                  f"{_debug(row)} keys must be equal to: {','.join(names)}")
        for key in names:
            columns[key].append(row[key])
    return {k: _batch(v, sig.inputs[k].dtype, k) for k, v in columns.items()}


def _batch(rows: list, dtype: int, name: str) -> np.ndarray:
    try:
        return to_tensor(rows, dtype, name)
    except InvalidArgument as e:
        if "Expecting shape" in e.message:
            raise InvalidArgument(_ragged_message(rows if dtype != types_pb2.DT_STRING else _strings(rows))) from None
        raise


def _columns(value: Any, sig: Signature) -> dict[str, np.ndarray]:
    names = sorted(sig.inputs)
    if not isinstance(value, dict) or _is_b64(value):
        if len(names) > 1:
            raise InvalidArgument("inputs is a plain value/list, but expecting an object as multiple "
                                  "input tensors required as per tensorinfo_map")
        return {names[0]: to_tensor(value, sig.inputs[names[0]].dtype, names[0])}
    feeds = {}
    for name in names:
        if name not in value:
            raise InvalidArgument(f"Missing named input: {name} in 'inputs' object.")
        feeds[name] = to_tensor(value[name], sig.inputs[name].dtype, name)
    return feeds


# --- answers ---------------------------------------------------------------------------------
def jsonable(array: np.ndarray, alias: str) -> Any:
    array = np.asarray(array)
    kind = array.dtype.kind
    if kind in "OS":
        as_b64 = alias.endswith("_bytes")
        flat = [({"b64": base64.b64encode(v).decode("ascii")} if as_b64 else v.decode("utf-8", "replace"))
                if isinstance(v, bytes) else str(v) for v in array.reshape(-1)]
        return np.array(flat, dtype=object).reshape(array.shape).tolist() if array.ndim else flat[0]
    if array.dtype in (np.float32, np.float16):
        # NumPy prints float32 at its shortest round-trip form ("2.1"); parsed back as a double,
        # json writes that same short form.
        return array.astype(str).astype(np.float64).tolist()
    return array.tolist()


def predict_response(outputs: dict[str, np.ndarray], columnar: bool) -> dict:
    if not outputs:
        raise InvalidArgument("Cannot convert empty tensor map to JSON")
    if columnar:
        if len(outputs) == 1:
            ((alias, value),) = outputs.items()
            return {"outputs": jsonable(value, alias)}
        return {"outputs": {k: jsonable(v, k) for k, v in outputs.items()}}
    if len(outputs) == 1:
        ((alias, value),) = outputs.items()
        return {"predictions": jsonable(value, alias)}
    sizes = {k: (np.shape(v)[0] if np.ndim(v) else None) for k, v in outputs.items()}
    first = next(iter(sizes.values()))
    for k, n in sizes.items():
        if n is None or n != first:
            raise InvalidArgument(f"Tensor name: {k} has inconsistent batch size: {n} expecting: {first}")
    columns = {k: jsonable(v, k) for k, v in outputs.items()}
    return {"predictions": [{k: columns[k][i] for k in columns} for i in range(first)]}


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, allow_nan=True, separators=(",", ":")).encode()


# --- classify / regress ----------------------------------------------------------------------
def _feature(name: str, value: Any) -> feature_pb2.Feature:
    feature = feature_pb2.Feature()
    kind = None
    for v in (value if isinstance(value, list) else [value]):
        if v is None or isinstance(v, list) or (isinstance(v, dict) and not _is_b64(v)):
            raise InvalidArgument(f"Feature: {name} has element with unexpected JSON type: {_json_type(v)}")
        if isinstance(v, bool) or (isinstance(v, int)):
            this = "int64"
        elif isinstance(v, float):
            this = "float"
        else:
            this = "bytes"
        if kind is not None and this != kind:
            raise InvalidArgument(f"Unexpected element type in feature: {name} expecting type: {kind}")
        kind = this
        if this == "int64":
            if not isinstance(v, bool) and not -2**63 <= v < 2**63:
                raise InvalidArgument(f"Feature: {name} has uint64_t element. Only int64_t is supported.")
            feature.int64_list.value.append(int(v))
        elif this == "float":
            feature.float_list.value.append(v)
        else:
            feature.bytes_list.value.append(_b64(v) if isinstance(v, dict) else v.encode("utf-8"))
    return feature


def _example(value: Any) -> example_pb2.Example:
    if not isinstance(value, dict):
        raise InvalidArgument(f"Example must be JSON object but got JSON {_json_type(value)}")
    example = example_pb2.Example()
    for name, v in value.items():
        example.features.feature[name].CopyFrom(_feature(name, v))
    return example


def examples_input(doc: dict, method: str) -> input_pb2.Input:
    """The Input of a :classify / :regress body (`examples`, optional `context`)."""
    data = input_pb2.Input()
    context = _example(doc["context"]) if "context" in doc else None
    if "examples" not in doc:
        raise InvalidArgument(f"JSON Value: {_debug(doc)} When method is {method}, key 'examples' is expected "
                              "and was not found")
    examples = doc["examples"]
    if not isinstance(examples, list):
        raise InvalidArgument(f"JSON Value: {_debug(doc)} Expecting 'examples' value to be an list/array")
    if not examples:
        raise InvalidArgument(f"JSON Value: {_debug(doc)} 'examples' value is an empty array")
    if context is not None:
        data.example_list_with_context.context.CopyFrom(context)
        target = data.example_list_with_context.examples
    else:
        target = data.example_list.examples
    for e in examples:
        target.add().CopyFrom(_example(e))
    return data


def _float(value: float) -> float:
    return float(np.array([value], np.float32).astype(str).astype(np.float64)[0])


def classification_json(result: classification_pb2.ClassificationResult) -> dict:
    return {"results": [[[c.label, _float(c.score)] for c in row.classes] for row in result.classifications]}


def regression_json(result: regression_pb2.RegressionResult) -> dict:
    return {"results": [_float(r.value) for r in result.regressions]}
