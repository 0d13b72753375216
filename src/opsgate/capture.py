"""A bounded sink for a command's output (``opsgate.targets.Sink``): keeps the first ``limit``
bytes, counts them all, so a command that prints without end cannot fill memory.

>>> out = Capture(limit=4)
>>> out.feed(b"ab"); out.feed(b"cdef")
>>> out.text(), out.size, out.whole
('abcd', 6, False)
"""

from __future__ import annotations


class Capture:
    """A command's output up to ``limit`` bytes; ``size`` counts all of it."""

    def __init__(self, limit: int = 64 << 10) -> None:
        self.data = bytearray()
        self.size = 0
        self.limit = limit

    def feed(self, data: bytes) -> None:
        self.size += len(data)
        room = self.limit - len(self.data)
        if room > 0:
            self.data += data[:room]

    @property
    def whole(self) -> bool:
        """Nothing was left out."""
        return self.size <= self.limit

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")
