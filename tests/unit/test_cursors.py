"""Page cursors are signed: what AINS hands out comes back intact, anything else is a 400."""

import pytest

from ains.core.pagination import InvalidCursor, decode_cursor, decode_position, encode_cursor, set_cursor_key


@pytest.fixture(autouse=True)
def cursor_key():
    set_cursor_key("unit-test-admin-key-0123456789abcdef")


def test_a_cursor_round_trips():
    assert decode_cursor(encode_cursor("2026-11-27T12:00:00Z", "task_1"), 2) == ["2026-11-27T12:00:00Z", "task_1"]


def test_a_position_cursor_round_trips():
    assert decode_position(encode_cursor(41)) == 41


def test_no_cursor_is_the_first_page():
    assert decode_position(None) is None


def test_a_changed_payload_is_refused():
    body, _, tag = encode_cursor(41).partition(".")
    forged = encode_cursor(42).partition(".")[0] + "." + tag
    with pytest.raises(InvalidCursor):
        decode_cursor(forged, 1)


def test_a_cursor_signed_with_another_key_is_refused():
    cursor = encode_cursor(41)
    set_cursor_key("another-admin-key-0123456789abcdef-x")
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor, 1)


@pytest.mark.parametrize("garbage", ["", ".", "abc", "%%%.%%%", "e30.e30", "\u00e9.\u00e9"])
def test_garbage_is_refused(garbage):
    with pytest.raises(InvalidCursor):
        decode_cursor(garbage, 1)


def test_the_wrong_arity_is_refused():
    with pytest.raises(InvalidCursor):
        decode_cursor(encode_cursor(1, 2), 1)


def test_the_refusal_is_a_400():
    assert InvalidCursor().status_code == 400
