"""The line splitter: a byte stream cut into lines, as the Arduino IDE's monitor cuts it.

Records end in ``\\r?\\n``; the first line after opening is discarded (it is almost always
cut); a line longer than the bound is dropped and counted instead of growing the buffer
without end (a wrong baud rate often produces no newline at all). Pure: bytes in, lines
out, no port.
"""

from __future__ import annotations

MAX_LINE_BYTES = 4096  # a Serial Plotter line is ~30 bytes; 4 KiB is room for any sketch


class LineSplitter:
    """Bytes in, complete lines out (without their line ends); bounded memory."""

    def __init__(self, *, max_line: int = MAX_LINE_BYTES, discard_first: bool = True) -> None:
        self.max_line = max_line
        self._buffer = bytearray()
        self._skipping = discard_first  # inside a line that is dropped (first or too long)
        self._first = discard_first
        self.overlong = 0  # lines dropped for being longer than max_line

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line waiting for its end."""
        return len(self._buffer)

    def reset(self) -> None:
        """Forget partial input (after a reconnect) and drop the next first line again."""
        self._buffer.clear()
        self._skipping = True
        self._first = True

    def feed(self, data: bytes) -> list[bytes]:
        """The lines that ``data`` completes."""
        buffer = self._buffer
        buffer += data
        if b"\n" not in data:
            if len(buffer) > self.max_line:
                if not self._skipping:
                    self.overlong += 1
                self._skipping = True
                buffer.clear()
            return []
        parts = bytes(buffer).split(b"\n")
        tail = parts.pop()
        buffer[:] = tail
        if self._skipping:
            parts.pop(0)
            self._skipping = False
            self._first = False
        if not parts:
            lines: list[bytes] = []
        elif max(map(len, parts)) <= self.max_line:
            # No line too long (nearly always): drop one \r before each \n in one pass.
            lines = (b"\n".join(parts) + b"\n").replace(b"\r\n", b"\n").split(b"\n")
            lines.pop()
        else:
            lines = []
            for part in parts:
                if len(part) > self.max_line:
                    self.overlong += 1
                    continue
                lines.append(part[:-1] if part.endswith(b"\r") else part)
        if len(buffer) > self.max_line:
            self.overlong += 1
            self._skipping = True
            buffer.clear()
        return lines
