"""Event streams without I/O: the SSE parser, and the cursor that makes a stream survive a
broken connection.

The cursor remembers the last event it passed on (`last`, its `seq`) and the run it belongs to.
When a connection breaks, the stream goes on from `resume_call()`: the run's event stream
after `last` (`Last-Event-ID`), or, before the first event told which run it is, the same
start again under the same idempotency key. Events at or below `last` are dropped, so a
reader sees every event once, in order. A stream is over when the server ends it after a
`done` event (the run paused or ended); one that ends elsewhere was broken.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

from orch.client import calls
from orch.events import Event, decode_event


class UnknownEvent(Event, tag="unknown"):
    """An event of a type this client does not know (a newer server): its type and fields."""

    event_type: str
    data: dict[str, Any]


class _Header(msgspec.Struct):
    type: str
    run_id: str = ""
    seq: int = 0
    ts: float = 0.0


_header = msgspec.json.Decoder(_Header)


def parse_event(data: str) -> Event:
    try:
        return decode_event(data)
    except msgspec.ValidationError:
        head = _header.decode(data)
        return UnknownEvent(run_id=head.run_id, seq=head.seq, ts=head.ts, event_type=head.type,
                            data=msgspec.json.decode(data))


@dataclass
class Message:
    id: str | None
    data: str


class SSEParser:
    """Server-sent events from chunks of bytes: `feed` returns the messages completed so far."""

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[Message]:
        self._buffer += chunk
        out: list[Message] = []
        while True:
            cut = self._line_end()
            if cut is None:
                return out
            end, skip = cut
            line = self._buffer[:end].decode("utf-8")
            self._buffer = self._buffer[end + skip:]
            if not line:
                if self._data:
                    out.append(Message(self._id, "\n".join(self._data)))
                self._data, self._id = [], None
                continue
            if line.startswith(":"):
                continue  # a comment: the server's keep-alive ping
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                self._data.append(value)
            elif name == "id":
                self._id = value

    def _line_end(self) -> tuple[int, int] | None:
        for i, byte in enumerate(self._buffer):
            if byte == 0x0A:
                return i, 1
            if byte == 0x0D:
                if i + 1 == len(self._buffer):
                    return None  # \r\n may be split across chunks
                return i, 2 if self._buffer[i + 1] == 0x0A else 1
        return None


class Cursor:
    """Where a stream stands; see the module docstring."""

    def __init__(self, first: calls.Call[None], *, run_id: str | None = None, after: int = 0) -> None:
        self.first = first
        self.run_id = run_id
        self.last = after
        self.done = False
        self.received = 0  # events passed on since the stream (re)connected

    def accept(self, messages: list[Message]) -> Iterator[Event]:
        """The new events among `messages`, in order."""
        for message in messages:
            event = parse_event(message.data)
            if event.run_id and self.run_id is None:
                self.run_id = event.run_id
            if event.seq <= self.last:
                continue
            self.last = event.seq
            self.received += 1
            self.done = event.__struct_config__.tag == "done"
            yield event

    def resume_call(self) -> calls.Call[None]:
        """What to ask for after a broken connection."""
        self.received = 0
        if self.run_id is None:
            return self.first  # nothing arrived: start again, under the same idempotency key
        return calls.events(self.run_id, self.last)
