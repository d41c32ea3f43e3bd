"""Plain-data encoding between the grader and the process that runs student code.

Used on both sides: the child encodes what student code returned, the grader decodes it. Only
plain data crosses: JSON numbers, strings, lists and dicts, with numpy arrays, numpy scalars and
torch tensors carried as .npy bytes and read back with ``allow_pickle=False``. Nothing the child
sends is ever unpickled or evaluated.

Types are checked exactly (``type(x) is int``, not ``isinstance``): an ``int`` subclass with a
lying ``__eq__``, an ndarray subclass or a tensor subclass is refused with a message, so the
grader only ever compares values it built itself.

This module is imported by the child under another package name, so it uses the standard
library and numpy only (torch is looked up in ``sys.modules`` when a tensor is seen).
"""
from __future__ import annotations

import base64
import io
import json
import math
import sys
from dataclasses import dataclass

import numpy as np

MAX_DEPTH = 32
MAX_ITEMS = 1_000_000       # list/dict entries in one value, all levels together
MAX_STRING = 1_000_000      # characters in one string
MAX_ARRAY_BYTES = 64 << 20  # bytes in one array or tensor
# numpy dtype kinds that are plain numbers: bool, signed/unsigned int, float, complex.
NUMERIC_KINDS = "biufc"


class EncodeError(TypeError):
    """A value that cannot cross the process boundary; the message says what it was and why."""


class DecodeError(ValueError):
    """Bytes from the child that are not a well-formed encoded value."""


@dataclass(frozen=True)
class TensorValue:
    """A torch tensor as the grader sees it, without importing torch.

    array: the values on the CPU, in the tensor's dtype (bfloat16/float16 are widened to
        float32, and ``dtype`` keeps the original name).
    dtype: the tensor's dtype as torch names it, e.g. ``"torch.int64"``.
    device: where the tensor lived, e.g. ``"cpu"`` or ``"cuda:0"``.
    requires_grad: whether the tensor was attached to an autograd graph.
    """

    array: np.ndarray
    dtype: str
    device: str
    requires_grad: bool


def describe(value) -> str:
    """A short human description of a value's type, for feedback ("a float", "an ndarray of
    shape (3, 2) and dtype float32", "a LyingInt (a subclass of int)")."""
    t = type(value)
    if isinstance(value, TensorValue):
        return f"a tensor of shape {tuple(value.array.shape)}, {value.dtype}, on {value.device}"
    if t is np.ndarray:
        return f"an ndarray of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, np.generic):
        return f"a numpy {t.__name__}"
    name = t.__name__
    builtin = (bool, int, float, str, list, tuple, dict)
    for base in builtin:
        if t not in builtin and isinstance(value, base):
            return f"a {name} (a subclass of {base.__name__})"
    shown = name if t.__module__ == "builtins" else f"{t.__module__}.{name}"
    return f"{'an' if shown[:1].lower() in 'aeiou' else 'a'} {shown}"


def _npy_bytes(array: np.ndarray) -> str:
    if array.dtype.kind not in NUMERIC_KINDS:
        raise EncodeError(f"an array of dtype {array.dtype} cannot be graded; use a numeric dtype")
    if array.nbytes > MAX_ARRAY_BYTES:
        raise EncodeError(f"an array of {array.nbytes} bytes is larger than the {MAX_ARRAY_BYTES} allowed")
    buffer = io.BytesIO()
    np.save(buffer, array if array.flags.c_contiguous else array.copy(order="C"), allow_pickle=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _npy_array(text: str) -> np.ndarray:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
        if len(raw) > MAX_ARRAY_BYTES + 4096:
            raise DecodeError("array too large")
        stream = io.BytesIO(raw)
        # The header is read first: its shape and dtype must account for exactly the bytes that
        # follow, so a header claiming 2**45 entries cannot make the reader allocate them.
        version = np.lib.format.read_magic(stream)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read_header:
            raise DecodeError(f"unsupported .npy version {version}")
        shape, _, dtype = read_header[version](stream, max_header_size=10000)
        if dtype.hasobject or dtype.kind not in NUMERIC_KINDS or any(type(n) is not int or n < 0 for n in shape):
            raise DecodeError("array header of a non-numeric or malformed array")
        if math.prod(shape) * dtype.itemsize != len(raw) - stream.tell():
            raise DecodeError(f"array header claims shape {shape[:8]} of {dtype}, which does not match its data")
        stream.seek(0)
        array = np.load(stream, allow_pickle=False)
    except (ValueError, OSError, EOFError, TypeError) as error:
        raise DecodeError(f"malformed array: {error}") from None
    if type(array) is not np.ndarray or array.dtype.kind not in NUMERIC_KINDS:
        raise DecodeError("array is not a plain numeric ndarray")
    return array


def _tensor_to_tagged(value) -> dict:
    torch = sys.modules["torch"]
    detached = value.detach()
    dtype = str(detached.dtype)
    if detached.dtype in (torch.bfloat16, torch.float16):
        detached = detached.float()
    array = detached.cpu().contiguous().numpy()
    return {"$tensor": [_npy_bytes(array), dtype, str(value.device), bool(value.requires_grad)]}


class _Encoder:
    def __init__(self):
        self.items = 0

    def encode(self, value, depth: int = 0):
        if depth > MAX_DEPTH:
            raise EncodeError(f"value nested deeper than {MAX_DEPTH} levels")
        self.items += 1
        if self.items > MAX_ITEMS:
            raise EncodeError(f"value holds more than {MAX_ITEMS} items")
        t = type(value)
        if value is None or t is bool or t is int:
            return value
        if t is float:
            return value if math.isfinite(value) else {"$float": repr(value)}
        if t is str:
            if len(value) > MAX_STRING:
                raise EncodeError(f"a string of {len(value)} characters is longer than {MAX_STRING}")
            return value
        if t is list:
            return [self.encode(v, depth + 1) for v in value]
        if t is tuple:
            return {"$tuple": [self.encode(v, depth + 1) for v in value]}
        if t is dict:
            if any(type(k) is not str for k in value):
                raise EncodeError("a dict with keys that are not plain str cannot be graded")
            return {"$dict": [[k, self.encode(v, depth + 1)] for k, v in value.items()]}
        if t is np.ndarray:
            return {"$ndarray": _npy_bytes(value)}
        if isinstance(value, np.generic) and t.__module__ == "numpy" and value.dtype.kind in NUMERIC_KINDS:
            return {"$npscalar": _npy_bytes(np.asarray(value))}
        if t is TensorValue:  # the grader sending a tensor argument to the child
            return {"$tensor": [_npy_bytes(value.array), value.dtype, value.device, value.requires_grad]}
        torch = sys.modules.get("torch")
        if torch is not None and t is torch.Tensor:
            if value.layout != torch.strided:
                raise EncodeError(f"a {value.layout} tensor cannot be graded; return a dense tensor")
            return _tensor_to_tagged(value)
        raise EncodeError(f"{describe(value)} cannot be graded")


def encode(value) -> bytes:
    """One line of JSON (ending in a newline) for ``value``; raises EncodeError naming the part
    that is not plain data."""
    return json.dumps(_Encoder().encode(value), allow_nan=False, separators=(",", ":")).encode() + b"\n"


def _untag(obj: dict):
    if len(obj) != 1:
        raise DecodeError(f"unexpected object with keys {sorted(obj)[:5]}")
    (tag, body), = obj.items()
    if tag == "$float" and body in ("nan", "inf", "-inf"):
        return float(body)
    if tag == "$tuple" and type(body) is list:
        return tuple(body)
    if tag == "$dict" and type(body) is list and all(type(p) is list and len(p) == 2 and type(p[0]) is str for p in body):
        return dict((k, v) for k, v in body)
    if tag == "$ndarray" and type(body) is str:
        return _npy_array(body)
    if tag == "$npscalar" and type(body) is str:
        array = _npy_array(body)
        if array.shape != ():
            raise DecodeError("numpy scalar with a shape")
        return array[()]
    if tag == "$tensor" and type(body) is list and len(body) == 4 and all(type(b) is str for b in body[:3]):
        # [npy, dtype, device, requires_grad]: a list, since object_hook sees every inner dict
        return TensorValue(array=_npy_array(body[0]), dtype=body[1], device=body[2], requires_grad=body[3] is True)
    raise DecodeError(f"unknown tag {tag!r}")


def decode(line: bytes):
    """The value encoded in one line from ``encode``. Tensors come back as TensorValue, arrays
    as plain numeric ndarrays; nothing is unpickled. Raises DecodeError on anything else,
    including a line with more than MAX_ITEMS list or dict entries (counted from its separators
    before parsing, so a huge answer is refused before it takes memory)."""
    if line.count(b",") + line.count(b"[") + line.count(b"{") > MAX_ITEMS + 16:
        raise DecodeError(f"message holds more than {MAX_ITEMS} items")
    try:
        return json.loads(line, object_hook=_untag, parse_constant=_refuse_constant)
    except DecodeError:
        raise
    except (ValueError, RecursionError) as error:
        raise DecodeError(f"malformed message: {str(error)[:200]}") from None


def _refuse_constant(name: str):
    raise DecodeError(f"bare {name} in message")
