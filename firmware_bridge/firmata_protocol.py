"""The Firmata protocol on the wire: its constants, encoders and a chunk decoder.

Everything LabHub knows of Firmata 2.5's bytes (https://github.com/firmata/protocol,
``protocol.md``) lives here, and only here: the Firmata reader
(:mod:`firmware_bridge.firmata`), the probe that tells Firmata from a sketch
(:mod:`firmware_bridge.probe`) and the virtual StandardFirmata board
(:mod:`firmware_bridge.sim.firmata_board`) all import it. It touches no port: encoders
return ``bytes``, and a :class:`Decoder` turns whatever bytes a read gave into the complete
messages among them, keeping an incomplete last one for the next read. One decoder serves
both directions; its table of message lengths says which (:data:`FROM_BOARD`,
:data:`TO_BOARD`): ``F9`` is a one-byte query from the host and a three-byte answer from the
board.

Framing, as a MIDI parser frames (Firmata's messages are MIDI's shape): a byte with the
high bit set starts a message, a message takes a fixed number of 7-bit data bytes (a sysex
runs from ``F0`` to ``F7``), and a command byte arriving before a message is complete
abandons that message, so a truncated or corrupted message costs only itself. Data bytes
outside any message (a stream joined mid-message) are skipped. StandardFirmata's own
parser keeps a sysex open until ``F7`` whatever comes; a host that sends well-formed
messages never sees the difference.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

# -- message commands: 0x80..0xEF carry a port, channel or pin in their low nibble -----------

DIGITAL_MESSAGE = 0x90  # 0x90|port, lsb7, msb7: the levels of one 8-pin port
ANALOG_MESSAGE = 0xE0  # 0xE0|pin, lsb7, msb7: a reading (board) or an analog write (host)
REPORT_ANALOG = 0xC0  # 0xC0|channel, 0/1
REPORT_DIGITAL = 0xD0  # 0xD0|port, 0/1
START_SYSEX = 0xF0
SET_PIN_MODE = 0xF4  # pin, mode
SET_DIGITAL_PIN_VALUE = 0xF5  # pin, value (Firmata 2.5 and later)
END_SYSEX = 0xF7
REPORT_VERSION = 0xF9  # the query (host), and the answer F9 major minor (board)
SYSTEM_RESET = 0xFF

# -- sysex commands (the first byte after F0) --------------------------------------------------

ANALOG_MAPPING_QUERY = 0x69
ANALOG_MAPPING_RESPONSE = 0x6A
CAPABILITY_QUERY = 0x6B
CAPABILITY_RESPONSE = 0x6C
PIN_STATE_QUERY = 0x6D
PIN_STATE_RESPONSE = 0x6E
EXTENDED_ANALOG = 0x6F
SERVO_CONFIG = 0x70
STRING_DATA = 0x71
I2C_CONFIG = 0x78
REPORT_FIRMWARE = 0x79
SAMPLING_INTERVAL = 0x7A

# -- pin modes ----------------------------------------------------------------------------------

MODE_INPUT = 0x00
MODE_OUTPUT = 0x01
MODE_ANALOG = 0x02
MODE_PWM = 0x03
MODE_SERVO = 0x04
MODE_I2C = 0x06
MODE_SERIAL = 0x0A
MODE_PULLUP = 0x0B
MODE_IGNORE = 0x7F

# -- limits -------------------------------------------------------------------------------------

DATA_MAX = 0x3FFF  # two 7-bit data bytes carry 14 bits
PIN_NIBBLE_MAX = 0x0F  # ANALOG_MESSAGE names pins 0..15; EXTENDED_ANALOG the rest
SERVO_MIN_PULSE_US = 544  # the Arduino Servo library's defaults for attach(pin)
SERVO_MAX_PULSE_US = 2400
HOST_MAX_SYSEX = 1024  # bytes of one sysex a host keeps: a Mega's capability answer fits

# Data bytes after the command byte, by direction (sysex is framed by F0..F7 instead).
FROM_BOARD: Mapping[int, int] = {ANALOG_MESSAGE: 2, DIGITAL_MESSAGE: 2, REPORT_VERSION: 2}
TO_BOARD: Mapping[int, int] = {
    ANALOG_MESSAGE: 2, DIGITAL_MESSAGE: 2, REPORT_ANALOG: 1, REPORT_DIGITAL: 1,
    SET_PIN_MODE: 2, SET_DIGITAL_PIN_VALUE: 2, REPORT_VERSION: 0, SYSTEM_RESET: 0,
}


class Message(NamedTuple):
    """One decoded message.

    ``command`` is the command byte without its low nibble for 0x80..0xEF
    (``ANALOG_MESSAGE``, ``DIGITAL_MESSAGE``, ...), the whole byte above that; ``channel`` is
    that nibble (port, channel or pin), else 0; ``data`` the data bytes. A sysex has
    ``command == START_SYSEX`` and its sysex command and payload in ``data`` (no F0, F7).
    """

    command: int
    channel: int
    data: bytes

    @property
    def value(self) -> int:
        """The 14-bit value of a two-data-byte message (an analog reading, a port's levels)."""
        return self.data[0] | self.data[1] << 7


# -- encoders -----------------------------------------------------------------------------------


def two_7bit(value: int) -> bytes:
    """``value``'s low 14 bits as two 7-bit data bytes, least significant first."""
    return bytes((value & 0x7F, (value >> 7) & 0x7F))


def pack_7bit(raw: bytes) -> bytes:
    """Each byte as two 7-bit data bytes (Firmata's way of sending text in a sysex)."""
    return b"".join(two_7bit(b) for b in raw)


def unpack_7bit(data: bytes) -> bytes:
    """The bytes :func:`pack_7bit` packed (an odd last byte is dropped)."""
    return bytes(data[k] | (data[k + 1] << 7) & 0xFF for k in range(0, len(data) - 1, 2))


def sysex(command: int, data: bytes = b"") -> bytes:
    """``F0 command data F7``."""
    return bytes((START_SYSEX, command)) + data + bytes((END_SYSEX,))


def encode(message: Message) -> bytes:
    """The bytes of a decoded message: what :class:`Decoder` turns back into it."""
    if message.command == START_SYSEX:
        return bytes((START_SYSEX,)) + message.data + bytes((END_SYSEX,))
    return bytes((message.command | message.channel,)) + message.data


def analog_message(channel: int, value: int) -> bytes:
    """``E0|ch lsb7 msb7``: a reading (board) or an analog write to pin 0..15 (host)."""
    return bytes((ANALOG_MESSAGE | (channel & 0x0F),)) + two_7bit(value)


def digital_message(port: int, mask: int) -> bytes:
    """``90|port lsb7 msb7``: the levels of one 8-pin port."""
    return bytes((DIGITAL_MESSAGE | (port & 0x0F),)) + two_7bit(mask)


def extended_analog(pin: int, value: int) -> bytes:
    """EXTENDED_ANALOG sysex: an analog write to any pin, the value in as many 7-bit bytes
    as it needs."""
    body = bytearray((pin & 0x7F, value & 0x7F))
    value >>= 7
    while value:
        body.append(value & 0x7F)
        value >>= 7
    return sysex(EXTENDED_ANALOG, bytes(body))


def analog_write(pin: int, value: int) -> bytes:
    """A PWM duty or servo angle for ``pin``: ANALOG_MESSAGE where it reaches, else
    EXTENDED_ANALOG (pins above 15, values above 14 bits)."""
    if pin <= PIN_NIBBLE_MAX and 0 <= value <= DATA_MAX:
        return analog_message(pin, value)
    return extended_analog(pin, value)


def report_analog(channel: int, on: bool) -> bytes:
    """``C0|ch 0/1``: start or stop reporting analog channel ``channel``."""
    return bytes((REPORT_ANALOG | (channel & 0x0F), 1 if on else 0))


def report_digital(port: int, on: bool) -> bytes:
    """``D0|port 0/1``: start or stop reporting the levels of an 8-pin port."""
    return bytes((REPORT_DIGITAL | (port & 0x0F), 1 if on else 0))


def set_pin_mode(pin: int, mode: int) -> bytes:
    """``F4 pin mode``."""
    return bytes((SET_PIN_MODE, pin & 0x7F, mode & 0x7F))


def sampling_interval(ms: int) -> bytes:
    """SAMPLING_INTERVAL sysex: how often the board sends its analog readings."""
    return sysex(SAMPLING_INTERVAL, two_7bit(ms))


def servo_config(pin: int, min_us: int = SERVO_MIN_PULSE_US,
                 max_us: int = SERVO_MAX_PULSE_US) -> bytes:
    """SERVO_CONFIG sysex: attach a servo to ``pin`` with its pulse range (microseconds)."""
    return sysex(SERVO_CONFIG, bytes((pin & 0x7F,)) + two_7bit(min_us) + two_7bit(max_us))


QUERY_VERSION = bytes((REPORT_VERSION,))
QUERY_FIRMWARE = sysex(REPORT_FIRMWARE)


def version_report(major: int, minor: int) -> bytes:
    """``F9 major minor``: the board's protocol version, its answer to ``F9``."""
    return bytes((REPORT_VERSION, major & 0x7F, minor & 0x7F))


def firmware_report(name: str, major: int, minor: int) -> bytes:
    """``F0 79 major minor <name as 7-bit pairs> F7``: the board's firmware and version."""
    return sysex(REPORT_FIRMWARE, bytes((major & 0x7F, minor & 0x7F)) + pack_7bit(name.encode()))


def string_message(text: str) -> bytes:
    """STRING_DATA sysex: text from the board (``Firmata.sendString``)."""
    return sysex(STRING_DATA, pack_7bit(text.encode()))


def capability_response(pins: Iterable[Sequence[tuple[int, int]]]) -> bytes:
    """CAPABILITY_RESPONSE: per pin, its (mode, resolution) pairs, then ``7F``."""
    out = bytearray()
    for modes in pins:
        for mode, resolution in modes:
            out += bytes((mode, resolution))
        out.append(0x7F)
    return sysex(CAPABILITY_RESPONSE, bytes(out))


def analog_mapping_response(channels: Iterable[int | None]) -> bytes:
    """ANALOG_MAPPING_RESPONSE: per pin its analog channel, ``7F`` for a pin without one."""
    return sysex(ANALOG_MAPPING_RESPONSE, bytes(0x7F if c is None else c for c in channels))


def pin_state_response(pin: int, state: tuple[int, int] | None) -> bytes:
    """PIN_STATE_RESPONSE: the pin, then its mode and state in as few 7-bit bytes as the
    state needs (up to 16 bits), or the pin alone for a pin the board does not have."""
    body = bytearray((pin & 0x7F,))
    if state is not None:
        mode, value = state[0], state[1] & 0xFFFF
        body += bytes((mode, value & 0x7F))
        if value & 0xFF80:
            body.append((value >> 7) & 0x7F)
        if value & 0xC000:
            body.append((value >> 14) & 0x7F)
    return sysex(PIN_STATE_RESPONSE, bytes(body))


class Firmware(NamedTuple):
    """What a REPORT_FIRMWARE answer says: the firmware's version and its name."""

    major: int
    minor: int
    name: str


def parse_firmware(payload: bytes) -> Firmware | None:
    """The firmware report in a sysex payload (``79 major minor name...``), else None."""
    if len(payload) < 3 or payload[0] != REPORT_FIRMWARE:
        return None
    name = unpack_7bit(payload[3:]).decode("ascii", "replace")
    return Firmware(payload[1], payload[2], name)


def parse_string(payload: bytes) -> str | None:
    """The text of a STRING_DATA sysex payload, else None."""
    if not payload or payload[0] != STRING_DATA:
        return None
    return unpack_7bit(payload[1:]).decode("utf-8", "replace")


# -- the decoder --------------------------------------------------------------------------------


class Decoder:
    """Complete messages out of a byte stream fed a chunk at a time; see the module docstring.

    ``lengths`` is the direction's table of data bytes per command (:data:`FROM_BOARD` or
    :data:`TO_BOARD`). A command byte not in it is skipped, or, with ``unknown=True``,
    given as a message without data (the board logs what it does not handle). A sysex
    keeps at most ``max_sysex`` bytes; the rest up to ``F7`` is dropped, as the Firmata
    library's fixed buffer drops it.
    """

    def __init__(self, lengths: Mapping[int, int], *, max_sysex: int = HOST_MAX_SYSEX,
                 unknown: bool = False) -> None:
        self.lengths = dict(lengths)
        self.max_sysex = max_sysex
        self.unknown = unknown
        self._tail = b""  # an incomplete last message, from its command byte

    @property
    def pending(self) -> int:
        """Bytes of an incomplete message kept for the next chunk."""
        return len(self._tail)

    def reset(self) -> None:
        """Forget an incomplete message (the stream starts afresh: a reset, a new port)."""
        self._tail = b""

    def feed(self, chunk: bytes) -> list[Message]:
        """The messages completed by ``chunk``, in order."""
        data = self._tail + chunk if self._tail else bytes(chunk)
        self._tail = b""
        out: list[Message] = []
        append = out.append
        lengths = self.lengths
        n = len(data)
        i = 0
        while i < n:
            byte = data[i]
            if byte < 0x80:  # a data byte outside any message
                i += 1
                continue
            if byte == START_SYSEX:
                j = i + 1
                while j < n and data[j] < 0x80:
                    j += 1
                if j == n:  # not ended yet: keep what the buffer would hold
                    self._tail = data[i:min(n, i + 1 + self.max_sysex)]
                    return out
                if data[j] == END_SYSEX:
                    append(Message(START_SYSEX, 0, data[i + 1:min(j, i + 1 + self.max_sysex)]))
                    j += 1
                i = j  # a command byte inside abandoned the sysex: it starts the next one
                continue
            if byte < START_SYSEX:
                command, channel = byte & 0xF0, byte & 0x0F
            else:
                command, channel = byte, 0
            size = lengths.get(command)
            if size is None:
                if self.unknown and byte != END_SYSEX:
                    append(Message(command, channel, b""))
                i += 1
                continue
            end = i + 1 + size
            j = i + 1
            while j < end and j < n and data[j] < 0x80:
                j += 1
            if j == end:
                append(Message(command, channel, data[i + 1:end]))
                i = end
            elif j == n:  # cut by the chunk's end: finish it with the next chunk
                self._tail = data[i:]
                return out
            else:  # a command byte came first: this message is abandoned
                i = j
        return out
