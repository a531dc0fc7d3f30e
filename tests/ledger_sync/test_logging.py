import logging

from ledger_sync.logging import KeyValueFormatter


def _record(message: str, exc_info=None, **extra) -> logging.LogRecord:
    record = logging.LogRecord(
        "ledger_sync.test", logging.INFO, __file__, 1, message, None, exc_info
    )
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_the_fields_passed_as_extra_follow_the_message():
    formatter = KeyValueFormatter("%(levelname)s %(message)s")

    text = formatter.format(
        _record("cycle.finished", trigger="command", problems=3, note="two words")
    )

    assert text == "INFO cycle.finished note='two words' problems=3 trigger=command"


def test_a_record_without_fields_is_formatted_as_usual():
    formatter = KeyValueFormatter("%(levelname)s %(message)s")

    assert formatter.format(_record("plain")) == "INFO plain"


def test_the_traceback_stays_below_the_fields():
    formatter = KeyValueFormatter("%(message)s")
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        text = formatter.format(_record("task failed", exc_info=sys.exc_info(), task="sync"))

    first, _, rest = text.partition("\n")
    assert first == "task failed task=sync"
    assert rest.startswith("Traceback") and "ValueError: boom" in rest
