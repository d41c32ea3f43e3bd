"""The plain-data codec: what crosses from the child comes back as the same plain value, and
anything that is not plain data, or not exactly its type, is refused."""
import math

import numpy as np
import pytest
import torch

from autograder.child.codec import DecodeError, EncodeError, TensorValue, decode, describe, encode


@pytest.mark.parametrize("value", [
    None, True, False, 0, -7, 2**200, 1.5, -0.0, "text", [1, [2.5, "x"]], (1, (2,)), {"a": [1, {"b": None}]},
    np.float64(2.5), np.int64(-3), np.bool_(True), np.float32(1.25),
])
def test_plain_values_round_trip_exactly(value):
    back = decode(encode(value))
    assert type(back) is type(value)
    assert back == value


def test_non_finite_floats_round_trip():
    back = decode(encode([math.nan, math.inf, -math.inf]))
    assert math.isnan(back[0]) and back[1] == math.inf and back[2] == -math.inf


def test_arrays_keep_shape_dtype_and_values():
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    back = decode(encode(array))
    assert type(back) is np.ndarray and back.dtype == np.float32 and np.array_equal(back, array)


def test_tensors_keep_dtype_device_and_grad_flag():
    tensor = torch.linspace(0, 1, 5, dtype=torch.float64, requires_grad=True)
    back = decode(encode(tensor))
    assert isinstance(back, TensorValue)
    assert (back.dtype, back.device, back.requires_grad) == ("torch.float64", "cpu", True)
    assert np.array_equal(back.array, tensor.detach().numpy())
    half = decode(encode(torch.ones(2, dtype=torch.bfloat16)))
    assert half.dtype == "torch.bfloat16" and half.array.dtype == np.float32


class LyingInt(int):
    def __eq__(self, other):
        return True

    __hash__ = int.__hash__


class SubArray(np.ndarray):
    pass


class SubTensor(torch.Tensor):
    pass


@pytest.mark.parametrize("value, message", [
    (LyingInt(3), "LyingInt (a subclass of int)"),
    (np.zeros(3).view(SubArray), "SubArray"),
    (torch.zeros(2).as_subclass(SubTensor), "SubTensor"),
    (np.array([object()]), "dtype object"),
    (np.array(["a"]), "dtype <U1"),
    ({1: 2}, "keys that are not plain str"),
    (lambda: 0, "function"),
    (object(), "object"),
    ([[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]], "nested deeper"),
])
def test_values_that_are_not_plain_data_are_refused(value, message):
    with pytest.raises(EncodeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        encode(value)


@pytest.mark.parametrize("line", [
    b"not json", b'{"$pickle": "gASV"}', b'{"$ndarray": "!!!"}', b'{"$float": "1e5"}', b"NaN",
    b'{"$ndarray": "k05VTVBZAQB2AHsnZGVzY3InOiAnfE8nLCAnZm9ydHJhbl9vcmRlcic6IEZhbHNlLCAnc2hhcGUnOiAoMSwpLCB9ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAqABF0u"}',
])
def test_malformed_or_pickled_input_is_refused(line):
    with pytest.raises(DecodeError):
        decode(line)


def test_describe_names_types_for_feedback():
    assert describe(2.0) == "a float"
    assert describe(np.zeros((2, 3))) == "an ndarray of shape (2, 3) and dtype float64"
    assert describe(True) == "a bool"


def test_an_array_header_must_match_its_data():
    """A crafted .npy header claiming 2**45 entries is refused before anything is allocated."""
    import base64
    import io
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False, "shape": (2**45,)})
    payload = base64.b64encode(buffer.getvalue() + b"\0" * 64).decode()
    with pytest.raises(DecodeError, match="does not match its data"):
        decode(('{"$ndarray":"' + payload + '"}').encode())


def test_a_message_with_too_many_items_is_refused_before_parsing():
    from autograder.child.codec import MAX_ITEMS
    line = b"[" + b"1," * (MAX_ITEMS + 100) + b"1]"
    with pytest.raises(DecodeError, match="more than"):
        decode(line)
