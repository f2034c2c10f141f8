"""A transaction's gathered state lives on its session, typed, until the commit takes it."""

from sqlalchemy.orm import Session

from ains.core.transaction_state import Memo, TransactionState, state_of, take_state

NUMBERS: Memo[list[int]] = Memo("numbers", list)
NAMES: Memo[dict[str, str]] = Memo("names", dict)


def test_one_state_per_session_made_at_first_use():
    session = Session()
    first = state_of(session)
    assert isinstance(first, TransactionState)
    assert state_of(session) is first
    assert state_of(Session()) is not first


def test_each_memo_key_has_its_own_value_made_by_its_factory():
    state = TransactionState()
    state.memo(NUMBERS).append(1)
    state.memo(NUMBERS).append(2)
    state.memo(NAMES)["a"] = "b"
    assert state.memo(NUMBERS) == [1, 2]
    assert state.memo(NAMES) == {"a": "b"}
    # Two keys with one name are still two slots: the key object, not its name, is what counts.
    assert TransactionState().memo(Memo("numbers", list)) == []


def test_taking_the_state_removes_it_from_the_session():
    session = Session()
    state_of(session).after_commit.append(print)
    state_of(session).cache_changed.setdefault("task", set()).add("task_1")
    taken = take_state(session)
    assert taken.after_commit == [print] and taken.cache_changed == {"task": {"task_1"}}
    assert state_of(session) is not taken and state_of(session).after_commit == []


def test_taking_from_a_session_that_gathered_nothing_gives_an_empty_state():
    taken = take_state(Session())
    assert taken.after_commit == [] and taken.cache_changed == {} and taken.announcements == {}
