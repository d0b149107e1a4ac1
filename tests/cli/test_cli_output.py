"""The command line's output: control characters from servers never reach the terminal, secrets never appear."""

from __future__ import annotations

import json
import sys

import pytest
from cli_support import HOSTILE, assert_no_control

from cadenza_async.cli import _output
from cadenza_async.cli._errors import auth_failure, explain, flag_words
from cadenza_async.cli._output import Output, clean_line, clean_text
from cadenza_async.config import ClientConfig
from cadenza_async.errors import (
    AuthenticationError,
    ConfigurationError,
    StreamError,
    TransportError,
)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b]0;pwned\x07order 1", "order 1"),  # OSC retitle, BEL-terminated
        ("\x1b]0;pwned\x1b\\order 1", "order 1"),  # OSC, ST-terminated
        ("\x1b[2Jcleared", "cleared"),  # CSI clear screen
        ("red \x1b[31mtext\x1b[0m", "red text"),
        ("\x9b2Jc1", "c1"),  # C1 CSI
        ("bell\x07 back\x08space del\x7f", "bell backspace del"),
        ("two\nlines\ttab\rcr", "two lines tab cr"),
        ("\u202eevil\u202c", "evil"),  # bidirectional override
        ("\x1b]0;unterminated", ""),
        ("plain é ✓", "plain é ✓"),
    ],
)
def test_clean_line_strips_escape_sequences_and_controls(raw, shown):
    assert clean_line(raw) == shown


def test_clean_text_keeps_newlines_and_tabs_but_not_carriage_returns():
    assert clean_text("a\tb\nc\rd\x1b[2J") == "a\tb\ncd"


def test_plain_output_cleans_say_error_note_and_tables(capsys):
    out = Output(plain=True)
    out.say("said " + HOSTILE)
    out.table("T", ("a", "b"), [("cell " + HOSTILE, "x\ny")])
    out.error("failed " + HOSTILE)
    out.note("noted " + HOSTILE)
    out.warn("warned " + HOSTILE)

    captured = capsys.readouterr()
    assert_no_control(captured.out + captured.err)
    assert "said boom" in captured.out
    assert "cell boom" in captured.out
    assert "x y" in captured.out
    assert "error: failed boom" in captured.err


def test_rich_output_cleans_server_text(capsys, monkeypatch):
    pytest.importorskip("rich")
    monkeypatch.setattr(_output, "_isatty", lambda stream: True)  # as on a terminal
    out = Output()
    assert out.console is not None
    out.say("said " + HOSTILE)
    out.table("T", ("a",), [("cell " + HOSTILE,)])
    out.error("failed " + HOSTILE)

    captured = capsys.readouterr()
    assert_no_control(captured.out + captured.err)
    assert "said boom" in captured.out
    assert "failed boom" in captured.err


def test_json_lines_keep_the_data_but_escape_what_a_terminal_would_act_on(capsys):
    Output(json_mode=True).emit({"message": HOSTILE + "\u202e"})

    line = capsys.readouterr().out
    assert_no_control(line)
    assert "\u202e" not in line
    assert json.loads(line) == {"message": HOSTILE + "\u202e"}


def test_secrets_and_credential_shapes_are_redacted(capsys):
    out = Output(plain=True)
    out.secrets = ["s3cret-token-value"]
    out.error('401: {"token": "abc"} Authorization: Bearer s3cret-token-value ?token=xyz')

    err = capsys.readouterr().err
    assert "s3cret" not in err
    assert "abc" not in err
    assert "xyz" not in err


def test_a_token_split_by_control_characters_is_still_redacted(capsys):
    out = Output(plain=True)
    out.secrets = ["s3cret-token-value"]
    out.error("echo s3cret-\x1b[0mtoken-value")

    assert "s3cret" not in capsys.readouterr().err


def test_settings_errors_name_flags_not_python_keywords():
    assert flag_words("no token: set CADENZA_TOKEN or pass token=") == (
        "no token: set CADENZA_TOKEN or pass --token"
    )
    worded = flag_words(
        "api_url 'http://example.com' is http:// to a non-loopback host; "
        "use https:// or pass allow_insecure=True"
    )
    assert "--api-url" in worded
    assert "--allow-insecure" in worded
    assert "allow_insecure" not in worded
    assert "api_url" not in worded


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (StreamError("connect refused: invalid token", code=3500), "ws"),
        (StreamError("token expired", code=109), "ws"),
        (StreamError("WebSocket handshake refused: HTTP 401", code=401), "ws"),
        (AuthenticationError("Unauthorized", status=401), "rest"),
        (StreamError("stream closed by the server", code=3501), None),
        (TransportError("POST /x: refused"), None),
    ],
)
def test_refused_tokens_are_recognised_on_either_endpoint(exc, kind):
    assert auth_failure(exc) == kind


def test_a_websocket_authentication_error_counts_as_the_websockets():
    class StreamAuth(AuthenticationError, StreamError):  # the SDK's newer shape
        def __init__(self, message: str) -> None:
            AuthenticationError.__init__(self, message, errno=3500)
            self.code = 3500

    assert auth_failure(StreamAuth("invalid token")) == "ws"


def _config() -> ClientConfig:
    return ClientConfig(
        token="t0ken-value",
        api_url="https://api.example.com",
        ws_url="wss://ws.example.com/connection/websocket?token=t0ken-value",
    )


def test_authentication_failures_exit_2_and_name_the_endpoint():
    message, code = explain(StreamError("invalid token", code=3500), _config())
    assert code == 2
    assert message.startswith("authentication failed: the WebSocket at wss://ws.example.com/")
    assert "t0ken" not in message  # the query string is not shown

    message, code = explain(AuthenticationError("Unauthorized", status=401), _config())
    assert code == 2
    assert message == (
        "authentication failed: the REST API at https://api.example.com refused the token: "
        "Unauthorized (HTTP 401)"
    )


def test_connection_failures_name_the_host():
    message, code = explain(StreamError("could not connect: cannot connect: gaierror"), _config())
    assert code == 1
    assert "ws.example.com" in message
    message, code = explain(TransportError("POST /api: ClientConnectorError"), _config())
    assert code == 1
    assert "api.example.com" in message


def test_settings_errors_exit_2():
    assert explain(ConfigurationError("ws_url must not carry credentials"), None) == (
        "--ws-url (CADENZA_WS_URL) must not carry credentials",
        2,
    )


def test_output_module_never_imports_rich_in_plain_mode(monkeypatch):
    monkeypatch.setitem(sys.modules, "rich.console", None)
    out = Output(plain=True)
    assert out.console is None


def test_a_truncated_token_echoed_by_a_server_is_still_redacted(capsys):
    out = Output(plain=True)
    out.secrets = ["eyJhbGciOiJIUzI1NiJ9.payload.signature"]
    out.error("401: token eyJhbGciOiJIUzI1NiJ9.pay... refused")

    assert "eyJhbGciOiJIUzI1NiJ9" not in capsys.readouterr().err
