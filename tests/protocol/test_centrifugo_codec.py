"""The Centrifugo wire on its own: tolerant decoding, exact encoding, batching, deep data."""

from __future__ import annotations

import json

import msgspec
import pytest

from cadenza_async.protocol.centrifugo_codec import (
    DECODE_ERRORS,
    MAX_DATA_DEPTH,
    UNDECODABLE_DATA,
    Command,
    SubscribeRequest,
    batch_frames,
    decode_message,
    decode_without_deep_data,
    encode_command,
    is_json,
)


def test_a_message_with_unknown_fields_and_kinds_decodes_with_defaults():
    msg = decode_message('{"id":3,"subscribe":{"epoch":"e","new_field":1},"future":{"x":[]}}')
    assert msg.id == 3
    assert msg.subscribe is not None
    assert (msg.subscribe.epoch, msg.subscribe.offset, msg.subscribe.recovered) == ("e", 0, False)
    assert msg.push is None
    assert msg.error is None


def test_a_negative_offset_or_a_wrong_type_is_a_decode_error():
    for bad in ('{"push":{"channel":"c","pub":{"offset":-1}}}', '{"id":"one"}', "[1,2]", "{"):
        with pytest.raises(DECODE_ERRORS):
            decode_message(bad)


def test_a_command_is_written_without_its_defaults():
    text = encode_command(Command(7, subscribe=SubscribeRequest("tradingAccount:a")))
    assert json.loads(text) == {"id": 7, "subscribe": {"channel": "tradingAccount:a"}}
    recover = SubscribeRequest("c", recover=True, epoch="e", offset=4)
    assert json.loads(encode_command(Command(8, subscribe=recover)))["subscribe"] == {
        "channel": "c",
        "recover": True,
        "epoch": "e",
        "offset": 4,
    }


def test_commands_are_batched_in_order_into_frames_of_at_most_the_limit_in_utf8_bytes():
    messages = ['{"id":1}', '{"id":2,"x":"ééé"}', '{"id":3}', '{"id":4}']
    frames = batch_frames(messages, 30)
    assert "\n".join(frames).split("\n") == messages
    assert all(len(frame.encode()) <= 30 for frame in frames)
    assert batch_frames(['{"id":1,"long":"' + "x" * 50 + '"}'], 10) == [
        '{"id":1,"long":"' + "x" * 50 + '"}'
    ]  # a single message longer than the limit goes alone


def test_is_json_says_whether_a_payload_is_one_json_document():
    assert is_json(b'{"a":1}')
    assert is_json(b"null")
    assert not is_json(b"{")
    assert not is_json(b"{} {}")


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


#: Deep enough for the decoder itself to give up (RecursionError), far past MAX_DATA_DEPTH.
TOO_DEEP = 30_000


def test_only_publication_data_nested_too_deep_is_replaced_and_the_envelope_is_kept():
    deep = nested(TOO_DEEP)
    line = '{"push":{"channel":"c","pub":{"data":' + deep + ',"offset":5}}}'
    with pytest.raises(RecursionError):
        decode_message(line)
    result = decode_without_deep_data(line)
    assert result is not None
    msg, replaced = result
    assert replaced == 1
    assert msg.push is not None
    assert msg.push.pub is not None
    assert bytes(msg.push.pub.data) == UNDECODABLE_DATA
    assert msg.push.pub.offset == 5


def test_depth_in_the_envelope_itself_is_not_rescued():
    line = '{"push":{"channel":"c","other":' + nested(TOO_DEEP) + "}}"
    assert decode_without_deep_data(line) is None


def test_data_nested_deeper_than_max_data_depth_but_decodable_is_kept_as_it_is():
    line = '{"push":{"channel":"c","pub":{"data":' + nested(MAX_DATA_DEPTH + 10) + "}}}"
    msg = decode_message(line)  # the decoder copes: nothing to rescue
    assert msg.push is not None
    assert msg.push.pub is not None
    assert bytes(msg.push.pub.data) == nested(MAX_DATA_DEPTH + 10).encode()


def test_the_undecodable_marker_is_a_json_string_no_consumer_takes_for_an_event():
    assert isinstance(msgspec.json.decode(UNDECODABLE_DATA), str)
