"""Every documented promise has a test: each option of the option table is named by a test of its
behaviour (not only the settings round trip), and each user-facing error message is quoted by a
test. A new option or message without one fails here; the few that cannot be provoked on this
machine are listed with the reason."""

from __future__ import annotations

import promises

# module:line of the message's raise -> why no test provokes it (the line moves with the code:
# the check names the message, so a stale entry is easy to find)
UNPROVOKED_MESSAGES = {
    "the kept container did not answer on": "a keeper that starts but never binds its socket "
    "needs a broken plugin inside the image; the keeper's start is covered by tests/test_kept.py",
    "JupyterLab did not answer within": "waits the full start timeout (two minutes) for a lab "
    "that runs but never listens; the lab that exits at once is tested in test_workspace.py",
    "the build of": "the engine would have to report a finished build without an image id, "
    "which no engine here does",
}


def test_every_option_is_named_by_a_behaviour_test() -> None:
    assert promises.unnamed_options() == []


def test_every_error_message_is_quoted_by_a_test() -> None:
    unquoted = promises.unquoted_messages()
    unexplained = {where: text for where, text in unquoted.items()
                   if text not in UNPROVOKED_MESSAGES}
    assert unexplained == {}, "messages no test quotes (test them, or list them with a reason)"
    stale = set(UNPROVOKED_MESSAGES) - set(unquoted.values())
    assert stale == set(), "listed as unprovoked, but a test quotes them now: remove them"


def test_the_check_sees_an_unquoted_message() -> None:
    """The check itself: a message no test quotes is found, one quoted in part is not."""
    texts = "ERROR: engine label 'a' is given twice in dsrepro_engines\nshort"
    windows = {texts[i:i + promises.WINDOW] for i in range(len(texts))}
    assert promises.quoted(["is given twice in dsrepro_engines"], texts, windows)
    assert not promises.quoted(["a message that no test has ever quoted"], texts, windows)
    assert not promises.quoted(["short message"], texts, windows)
