"""The size limits' measure (`json_size`): the bytes of the value as compact JSON in UTF-8. That is what
`json.dumps(separators=(",", ":"), ensure_ascii=False)` writes, but for floats below 1e-4, whose exponent
pydantic-core writes without a leading zero or in full ("1e-7", "0.00001" where json.dumps writes "1e-07", "1e-05")."""

import json

import pytest

from ains.core.schemas import json_size


def _dumps_size(value):
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"n": 1, "s": "plain", "l": [1, 2.5, None, True, False]},
        {"floats": [0.1, 1e16, 1.0, -0.0, 123456789.123456789, 0.0001, 1e22, 1.7976931348623157e308]},
        {"big": 2**70, "negative": -(2**65)},
        {"text": 'quote " backslash \\ slash / é 😀 \u2028 \x7f', "controls": "\x00\x01\x08\x09\x0a\x0c\x0d\x1f"},
        {"nested": {"a": [{"b": {"c": ["deep"] * 3}}]}, "unicode key é": "v"},
        {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")},
        {"lone surrogate": "a\ud800b"},  # refused earlier by the API; measured all the same
        "a bare string",
        [1, "two", 3.0],
    ],
)
def test_json_size_is_the_size_json_dumps_writes(value):
    assert json_size(value) == _dumps_size(value)


def test_small_floats_are_measured_as_pydantic_core_writes_them():
    assert json_size({"f": 1e-7}) == len('{"f":1e-7}')
    assert json_size({"f": 1e-5}) == len('{"f":0.00001}')
