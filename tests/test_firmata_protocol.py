"""The Firmata protocol module: every encoder byte for byte against bytes written out by
hand from the protocol (firmata/protocol protocol.md), and the chunk decoder as a property:
encode then decode gives the messages back whatever the chunk boundaries, garbage between
messages costs only itself, and no bytes at all ever make it fail."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge import firmata_protocol as fp
from firmware_bridge.firmata_protocol import FROM_BOARD, TO_BOARD, Decoder, Message

# A firmware report of a sketch named "Blink.ino", version 2.5, written out by hand.
FIRMWARE = bytes.fromhex("f0 79 02 05  42 00 6c 00 69 00 6e 00 6b 00 2e 00 69 00 6e 00 6f 00  f7")


@pytest.mark.parametrize(("encoded", "expected"), [
    (fp.analog_message(1, 1023), "e1 7f 07"),
    (fp.digital_message(1, 0b1010_0101), "91 25 01"),
    (fp.digital_message(2, 0x3FFF), "92 7f 7f"),
    (fp.report_analog(3, True), "c3 01"),
    (fp.report_digital(2, False), "d2 00"),
    (fp.set_pin_mode(13, fp.MODE_OUTPUT), "f4 0d 01"),
    (fp.set_pin_mode(2, fp.MODE_PULLUP), "f4 02 0b"),
    (fp.sampling_interval(10), "f0 7a 0a 00 f7"),
    (fp.sampling_interval(1000), "f0 7a 68 07 f7"),
    (fp.servo_config(9), "f0 70 09 20 04 60 12 f7"),  # 544 and 2400 us, the Servo defaults
    (fp.analog_write(9, 90), "e9 5a 00"),
    (fp.analog_write(5, 255), "e5 7f 01"),
    (fp.analog_write(20, 90), "f0 6f 14 5a f7"),  # pin 20: past ANALOG_MESSAGE's nibble
    (fp.analog_write(3, 20_000), "f0 6f 03 20 1c 01 f7"),  # past 14 bits
    (fp.QUERY_VERSION, "f9"),
    (fp.QUERY_FIRMWARE, "f0 79 f7"),
    (fp.version_report(2, 5), "f9 02 05"),
    (fp.firmware_report("Blink.ino", 2, 5), FIRMWARE.hex(" ")),
    (fp.string_message("Hi"), "f0 71 48 00 69 00 f7"),
    (fp.capability_response([[], [(0, 1), (1, 1)]]), "f0 6c 7f 00 01 01 01 7f f7"),
    (fp.analog_mapping_response([None, 0, 1]), "f0 6a 7f 00 01 f7"),
    (fp.pin_state_response(13, (fp.MODE_OUTPUT, 1)), "f0 6e 0d 01 01 f7"),
    (fp.pin_state_response(3, (fp.MODE_PWM, 200)), "f0 6e 03 03 48 01 f7"),
    (fp.pin_state_response(9, (fp.MODE_SERVO, 0xC000)), "f0 6e 09 04 00 00 03 f7"),
    (fp.pin_state_response(127, None), "f0 6e 7f f7"),
])
def test_encoders_give_the_protocols_bytes(encoded: bytes, expected: str) -> None:
    assert encoded == bytes.fromhex(expected)


def test_a_firmware_report_and_a_string_read_back() -> None:
    (report,) = Decoder(FROM_BOARD).feed(FIRMWARE)
    assert fp.parse_firmware(report.data) == fp.Firmware(2, 5, "Blink.ino")
    (text,) = Decoder(FROM_BOARD).feed(fp.string_message("Max servos attached"))
    assert fp.parse_string(text.data) == "Max servos attached"
    assert fp.parse_firmware(text.data) is None and fp.parse_string(report.data) is None


def test_a_board_stream_decodes_into_its_messages() -> None:
    stream = bytes.fromhex("f9 02 05  e0 00 04  e5 7f 07  91 25 01  f0 71 48 00 f7")
    assert Decoder(FROM_BOARD).feed(stream) == [
        Message(fp.REPORT_VERSION, 0, b"\x02\x05"),
        Message(fp.ANALOG_MESSAGE, 0, b"\x00\x04"),
        Message(fp.ANALOG_MESSAGE, 5, b"\x7f\x07"),
        Message(fp.DIGITAL_MESSAGE, 1, b"\x25\x01"),
        Message(fp.START_SYSEX, 0, b"\x71\x48\x00"),
    ]
    assert [m.value for m in Decoder(FROM_BOARD).feed(stream)[1:4]] == [512, 1023, 165]


def test_an_incomplete_message_waits_for_the_next_chunk() -> None:
    decoder = Decoder(FROM_BOARD)
    assert decoder.feed(bytes.fromhex("e0 00 04 e1")) == [Message(fp.ANALOG_MESSAGE, 0,
                                                                 b"\x00\x04")]
    assert decoder.pending == 1
    assert decoder.feed(bytes.fromhex("10")) == []
    assert decoder.feed(bytes.fromhex("02 f0 79")) == [Message(fp.ANALOG_MESSAGE, 1,
                                                              b"\x10\x02")]
    assert decoder.feed(bytes.fromhex("02 05 f7")) == [Message(fp.START_SYSEX, 0,
                                                              b"\x79\x02\x05")]
    assert decoder.pending == 0
    decoder.feed(bytes.fromhex("e0 00"))
    decoder.reset()
    assert decoder.feed(bytes.fromhex("00")) == [], "a reset forgets the half message"


def test_a_command_byte_abandons_an_incomplete_message_and_a_sysex() -> None:
    stream = bytes.fromhex("e0 12  f0 79 02  e1 05 00  f7  33 44  91 01 00")
    assert Decoder(FROM_BOARD).feed(stream) == [
        Message(fp.ANALOG_MESSAGE, 1, b"\x05\x00"),
        Message(fp.DIGITAL_MESSAGE, 1, b"\x01\x00"),
    ]


def test_the_board_side_decodes_queries_and_names_what_it_does_not_know() -> None:
    decoder = Decoder(TO_BOARD, max_sysex=4, unknown=True)
    stream = bytes.fromhex("f9  ff  c2 01  a5 01 02  f4 0d 01  f0 01 02 03 04 05 06 f7")
    assert decoder.feed(stream) == [
        Message(fp.REPORT_VERSION, 0, b""),
        Message(fp.SYSTEM_RESET, 0, b""),
        Message(fp.REPORT_ANALOG, 2, b"\x01"),
        Message(0xA0, 5, b""),  # not Firmata: named, its data skipped
        Message(fp.SET_PIN_MODE, 0, b"\x0d\x01"),
        Message(fp.START_SYSEX, 0, b"\x01\x02\x03\x04"),  # the buffer's 4 bytes, no more
    ]
    assert Decoder(FROM_BOARD).feed(bytes.fromhex("a5 01 02 f9")) == [], \
        "the host skips what it does not know, and F9 from a board takes two data bytes"


# -- properties ---------------------------------------------------------------------------

data7 = st.integers(0, 0x7F)
board_messages = st.one_of(
    st.builds(lambda ch, v: Message(fp.ANALOG_MESSAGE, ch, fp.two_7bit(v)),
              st.integers(0, 15), st.integers(0, 0x3FFF)),
    st.builds(lambda port, v: Message(fp.DIGITAL_MESSAGE, port, fp.two_7bit(v)),
              st.integers(0, 15), st.integers(0, 0x3FFF)),
    st.builds(lambda a, b: Message(fp.REPORT_VERSION, 0, bytes((a, b))), data7, data7),
    st.builds(lambda body: Message(fp.START_SYSEX, 0, bytes(body)),
              st.lists(data7, max_size=80)),
)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def _decode(chunks: list[bytes], lengths: dict[int, int] | None = None) -> list[Message]:
    decoder = Decoder(FROM_BOARD if lengths is None else lengths)
    return [m for chunk in chunks for m in decoder.feed(chunk)]


@given(st.lists(board_messages, max_size=30), st.lists(st.integers(0, 10_000), max_size=20))
def test_encode_then_decode_in_any_chunks_gives_the_messages(
    messages: list[Message], cuts: list[int]
) -> None:
    stream = b"".join(fp.encode(m) for m in messages)
    assert _decode(_chunks(stream, cuts)) == messages


def _prefix(message: Message, size: int) -> bytes:
    encoded = fp.encode(message)
    return encoded[:1 + size % (len(encoded) - 1)]  # the command byte, never the whole


garbage = st.one_of(
    st.binary(min_size=1, max_size=20).map(lambda b: bytes(x & 0x7F for x in b)),
    st.builds(_prefix, board_messages, st.integers(0, 100)),
)


@given(st.lists(st.tuples(board_messages, st.none() | garbage), max_size=20),
       st.none() | garbage, st.lists(st.integers(0, 10_000), max_size=20))
def test_garbage_between_messages_never_yields_a_message(
    pairs: list[tuple[Message, bytes | None]], lead: bytes | None, cuts: list[int]
) -> None:
    """Stray data bytes (a stream joined mid-message) and cut messages (a byte lost) before,
    between or after whole messages: the whole ones come out, and nothing else."""
    # A cut message right before a data-only run would take those bytes as its own.
    stream = bytearray(lead or b"")
    for message, junk in pairs:
        stream += fp.encode(message) + (junk or b"")
    assert _decode(_chunks(bytes(stream), cuts)) == [m for m, _ in pairs]


@given(st.binary(max_size=400).map(lambda b: bytes(x & 0x7F for x in b)))
def test_data_bytes_alone_never_yield_a_message(data: bytes) -> None:
    assert _decode([data]) == []
    assert _decode([data], dict(TO_BOARD)) == []


@given(st.binary(max_size=400), st.lists(st.integers(0, 10_000), max_size=20))
def test_any_bytes_in_any_chunks_decode_the_same_and_only_into_what_is_there(
    data: bytes, cuts: list[int]
) -> None:
    whole = _decode([data])
    assert _decode(_chunks(data, cuts)) == whole
    for message in whole:
        assert fp.encode(message) in data, "a message made of bytes that were never sent"
        assert all(b < 0x80 for b in message.data)
