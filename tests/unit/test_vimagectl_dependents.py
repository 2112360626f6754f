"""``vimagectl stop --with-dependents``: parsed, validated, sent (issue 13.3)."""

from __future__ import annotations

import pytest

from vimagectl.args import UsageError
from vimagectl.cli import VERBS, parse
from vimagectl.client import SCHEMA
from vimagectl.exits import exit_status

pytestmark = pytest.mark.unit


def test_stop_with_dependents_is_sent_as_a_request_field() -> None:
    args = parse(["stop", "--with-dependents", "db"])
    request = VERBS["stop"].request(args)
    assert request == {"op": "stop", "names": ["db"], "all": False, "with_dependents": True}
    SCHEMA.check("Request", request)  # the daemon's own rule (forbids unknown fields)


def test_stop_without_the_option_sends_false() -> None:
    request = VERBS["stop"].request(parse(["stop", "db"]))
    assert request == {"op": "stop", "names": ["db"], "all": False, "with_dependents": False}


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["start", "--with-dependents", "db"], "--with-dependents"),
        (["--with-dependents", "stop", "db"], "--with-dependents"),
        (["stop", "--with-dependents=yes", "db"], "--with-dependents"),
        (["stop", "--with-dependents", "--all"], "--with-dependents"),
    ],
    ids=["other-verb", "before-the-verb", "with-a-value", "with-all"],
)
def test_bad_uses_are_usage_errors_naming_the_option(argv: list[str], named: str) -> None:
    with pytest.raises(UsageError) as refused:
        parse(argv)
    assert named in str(refused.value)


def test_dependents_running_exits_like_a_conflict() -> None:
    assert exit_status("dependents_running") == exit_status("conflict") == 75
