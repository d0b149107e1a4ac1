"""The one redaction module: tokens, fragments of them and credential patterns leave every text."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest

from cadenza_async import _redact, stream
from cadenza_async._redact import RedactingLogger, redact, redact_in_scope, scope_secrets
from cadenza_async.errors import ApiError, AuthenticationError, StreamError

TOKEN = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.sig-Qm9vW2xhc3Q"


def test_the_whole_token_and_any_8_character_run_of_it_are_masked():
    text = f"a {TOKEN} b {TOKEN[:19]}... c {TOKEN[10:18]} d {TOKEN[-9:]}"
    out = redact(text, (TOKEN,))
    for i in range(len(TOKEN) - 7):
        assert TOKEN[i : i + 8] not in out
    assert out.startswith("a *** b ***... c *** d ***")


def test_runs_shorter_than_8_characters_and_other_text_are_kept():
    out = redact(f"id 770e8400 and {TOKEN[:7]} stay", (TOKEN,))
    assert out == f"id 770e8400 and {TOKEN[:7]} stay"


def test_short_secrets_are_replaced_whole_and_tiny_ones_ignored():
    assert redact("x sekrit y", ("sekrit",)) == "x *** y"
    assert redact("a b c", ("b",)) == "a b c"
    assert redact("nothing", (None, "")) == "nothing"


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("Authorization: Bearer abc.def", "abc.def"),
        ("proxy-authorization: Basic dXNlcjpwdw==", "dXNlcjpwdw"),
        ("refused Bearer abc.def.ghi, try again", "abc.def"),
        ('{"connect":{"token":"abc.def.ghi"}}', "abc.def"),
        ('{\\"token\\":\\"abc.def.ghi\\"}', "abc.def"),
        ("wss://h/c?token=abc.def.ghi&x=1", "abc.def"),
        ("Set-Cookie: session=abc.def.ghi", "abc.def"),
    ],
)
def test_credential_patterns_are_masked_without_knowing_the_token(text, hidden):
    assert hidden not in redact(text)


def test_stream_redact_is_the_redaction_module():
    assert stream.redact is _redact.redact


async def test_errors_built_in_a_scope_are_scrubbed_of_its_secrets():
    async def reader() -> list[BaseException]:
        scope_secrets(lambda: (TOKEN, None))
        return [
            StreamError(f"connect refused: bad token {TOKEN}"),
            ApiError(f"quoted {TOKEN[:20]}", status=400),
            AuthenticationError(f"401 for {TOKEN}"),
        ]

    errors = await asyncio.get_running_loop().create_task(reader())
    for error in errors:
        for text in (str(error), repr(error), repr(error.args)):
            assert TOKEN[:8] not in text
            assert TOKEN[-8:] not in text
    # the scope ended with that task: this one has no secrets declared
    assert redact_in_scope(f"x {TOKEN} y") == f"x {TOKEN} y"


def test_redaction_stays_linear_on_long_texts():
    text = ("a" * 7 + TOKEN[:7]) * 20_000
    assert redact(text, (TOKEN,)) == text  # no 8-run of the token: nothing masked


def test_the_tokens_last_8_characters_at_the_very_end_of_a_text_are_masked():
    assert redact(f"refused: {TOKEN[-8:]}", (TOKEN,)) == "refused: ***"
    assert redact(TOKEN[-8:], (TOKEN,)) == "***"
    assert redact(TOKEN, (TOKEN,)) == "***"


def test_a_4_character_secret_is_masked_and_a_3_character_one_is_not():
    assert redact("pin abcd here", ("abcd",)) == "pin *** here"
    assert redact("pin abc here", ("abc",)) == "pin abc here"


def test_a_redacting_logger_record_passed_exc_info_carries_no_token(caplog):
    logger = logging.getLogger("cadenza_async.tests.redacting")
    adapter = RedactingLogger(logger, lambda: (TOKEN,))
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        try:
            raise ConnectionError(f"handshake refused for {TOKEN}")
        except ConnectionError:
            adapter.error("connect failed with %s", TOKEN, exc_info=True, stack_info=True)
            adapter.debug("again", exc_info=sys.exc_info())
    assert len(caplog.records) == 2
    for record in caplog.records:
        assert record.exc_info is None
        assert record.stack_info is None
    assert caplog.records[0].getMessage() == "connect failed with ***"
    assert TOKEN[:8] not in caplog.text
    assert TOKEN[-8:] not in caplog.text
