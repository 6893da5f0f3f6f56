"""Bad configuration ends the command with one clear line, never a traceback."""

from __future__ import annotations

import sys

import pytest

from functions.cli import main


def _exit_message(monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    monkeypatch.setattr(sys, "argv", ["digest", *args])
    with pytest.raises(SystemExit) as caught:
        main()
    return str(caught.value.code)


@pytest.mark.parametrize("value", ["nan", "inf", "-5", "abc"])
def test_a_budget_that_would_disable_the_hard_line_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("DIGEST_BUDGET_USD", value)

    message = _exit_message(monkeypatch, "status")

    assert message.startswith("error: configuration: DIGEST_BUDGET_USD")


def test_an_unreachable_database_names_the_variable_and_hides_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:hunter2secret@127.0.0.1:9/db")

    message = _exit_message(monkeypatch, "status")

    assert message.startswith("error: cannot open the state store (DATABASE_URL")
    assert "hunter2secret" not in message


def test_a_malformed_database_url_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "garbage")

    message = _exit_message(monkeypatch, "items")

    assert "cannot open the state store" in message
