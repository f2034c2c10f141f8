"""The wire form of a moment."""

from datetime import UTC, datetime, timedelta, timezone

from ains.core.clock import exact_text, utc_text


def test_a_utc_moment_ends_in_z():
    assert utc_text(datetime(2026, 11, 27, 15, 4, 5, 123456, tzinfo=UTC)) == "2026-11-27T15:04:05.123456Z"


def test_a_moment_in_another_zone_is_written_in_utc():
    paris_winter = timezone(timedelta(hours=1))
    assert utc_text(datetime(2026, 11, 27, 16, 4, 5, tzinfo=paris_winter)) == "2026-11-27T15:04:05Z"


def test_the_exact_form_for_people_is_to_the_second_in_utc():
    paris_winter = timezone(timedelta(hours=1))
    assert exact_text(datetime(2026, 11, 27, 16, 4, 5, 999999, tzinfo=paris_winter)) == "2026-11-27 15:04:05 UTC"


def test_the_file_clock_keeps_its_time_while_the_file_is_rewritten(tmp_path, monkeypatch):
    from ains.core import clock

    clock_file = tmp_path / "clock"
    monkeypatch.setenv(clock.TEST_CLOCK_ENV, str(clock_file))
    clock_file.write_text("2026-11-27T12:01:00+00:00")
    assert utc_text(clock.utcnow()) == "2026-11-27T12:01:00Z"
    clock_file.write_text("")  # caught between the truncation and the write
    assert utc_text(clock.utcnow()) == "2026-11-27T12:01:00Z"
    assert clock.moved_by_tests()


def test_without_a_test_clock_now_is_the_real_time(monkeypatch):
    from ains.core import clock

    monkeypatch.delenv(clock.TEST_CLOCK_ENV, raising=False)
    before = datetime.now(UTC)
    assert before <= clock.utcnow() <= datetime.now(UTC)
    assert not clock.moved_by_tests()


def test_relative_text_says_how_long_ago_or_until():
    from ains.core.clock import relative_text

    now = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
    assert relative_text(now - timedelta(seconds=1), now) == "just now"
    assert relative_text(now - timedelta(seconds=3), now) == "3 s ago"
    assert relative_text(now - timedelta(seconds=3), now, just_now_seconds=5) == "just now"
    assert relative_text(now - timedelta(minutes=3, seconds=59), now) == "3 min ago"
    assert relative_text(now + timedelta(hours=2, minutes=1), now) == "in 2 h"
    assert relative_text(now - timedelta(days=3), now) == "3 d ago"
