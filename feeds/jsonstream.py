"""Read the objects of a STIX bundle from a byte stream one at a time, in bounded memory.

Only the top level is walked by hand ({ "key": value, ..., "objects": [ obj, obj, ... ] }); each
element's extent is found with the C JSON decoder and the element is then parsed strictly
(duplicate keys, I-JSON numbers, depth) on its own, so one bad object is reported without losing
the others. Memory holds one object at a time (at most `max_object_bytes`) plus one read chunk.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from exchange.errors import InvalidJsonError
from exchange.intel.strictjson import loads_strict

_WS = " \t\r\n"
_DECODER = json.JSONDecoder()


class StreamError(ValueError):
    """The stream is not a JSON object with an `objects` array (or stopped mid-way)."""


@dataclass
class Element:
    """One element of `objects`: the parsed object, or why it could not be read."""

    index: int
    value: Any = None
    error: str | None = None


@dataclass
class BundleHeader:
    """The bundle's other top-level members (type, id, spec_version), as far as read."""

    members: dict[str, Any] = field(default_factory=dict)


class _Reader:
    def __init__(self, chunks: Iterable[bytes], max_object_bytes: int) -> None:
        self._chunks = iter(chunks)
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.max = max_object_bytes
        self.first = True

    def more(self) -> bool:
        """Read another chunk; False at the end of the stream."""
        if self.eof:
            return False
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self.eof = True
            tail = self._decoder.decode(b"", final=True)
            self.buf = self.buf[self.pos :] + tail
            self.pos = 0
            return bool(tail)
        try:
            text = self._decoder.decode(chunk)
        except UnicodeDecodeError:
            raise StreamError("the feed is not UTF-8 text") from None
        if self.first:
            text, self.first = text.removeprefix("\ufeff"), False
        self.buf = self.buf[self.pos :] + text
        self.pos = 0
        return True

    def peek(self) -> str:
        """The next non-blank character ('' at the end of the stream)."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WS:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return ""

    def expect(self, char: str, where: str) -> None:
        found = self.peek()
        if found != char:
            shown = repr(found) if found else "the end of the data"
            raise StreamError(f"expected {char!r} {where}, found {shown}")
        self.pos += 1

    def value(self) -> tuple[Any, str]:
        """The next JSON value and its text, reading more data until it is complete."""
        self.peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except RecursionError:
                # Nested too deep for the decoder: find where the element ends without
                # recursing, and hand back its text (the strict parse refuses just that one).
                found = _container_end(self.buf, self.pos)
                if found is None:
                    if len(self.buf) - self.pos > self.max:
                        raise StreamError(f"an element is larger than {self.max:,} bytes") from None
                    if not self.more():
                        raise StreamError("the data ends inside a value") from None
                    continue
                text = self.buf[self.pos : found]
                self.pos = found
                return None, text
            except json.JSONDecodeError as exc:
                if len(self.buf) - self.pos > self.max:
                    raise StreamError(
                        f"an element is larger than {self.max:,} bytes or is not JSON"
                    ) from None
                if not self.more():
                    raise StreamError(f"the data ends inside a value ({exc.msg})") from None
                continue
            if end == len(self.buf) and not self.eof and isinstance(value, (int, float)):
                self.more()  # a number may go on in the next chunk
                continue
            text = self.buf[self.pos : end]
            self.pos = end
            return value, text


def _container_end(buf: str, start: int) -> int | None:
    """The index just after the array or object opening at `start`, or None if `buf` ends first."""
    depth, in_string, escaped = 0, False, False
    for index in range(start, len(buf)):
        char = buf[index]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth == 0:
                return index + 1
    return None


def bundle_objects(
    chunks: Iterable[bytes], *, header: BundleHeader | None = None, max_object_bytes: int = 16 * 1024 * 1024
) -> Iterator[Element]:
    """Each element of the top-level `objects` array, parsed strictly; StreamError for broken framing."""
    reader = _Reader(chunks, max_object_bytes)
    header = header if header is not None else BundleHeader()
    if reader.peek() == "":
        raise StreamError("the feed is empty")
    reader.expect("{", "at the start (a STIX bundle is a JSON object)")
    index = 0
    if reader.peek() == "}":
        reader.pos += 1
        return
    while True:
        key, _ = reader.value()
        if not isinstance(key, str):
            raise StreamError("a member name of the bundle is not a string")
        reader.expect(":", f"after the member name {key!r}")
        if key == "objects":
            reader.expect("[", "to open the objects array")
            if reader.peek() == "]":
                reader.pos += 1
            else:
                while True:
                    _, text = reader.value()
                    try:
                        yield Element(index, value=loads_strict(text))
                    except InvalidJsonError as exc:
                        yield Element(index, error=exc.message)
                    index += 1
                    sep = reader.peek()
                    if sep == ",":
                        reader.pos += 1
                        continue
                    reader.expect("]", "or ',' after an object in the objects array")
                    break
        else:
            value, _ = reader.value()
            header.members[key] = value
            if key == "type" and value != "bundle":
                raise StreamError(f"this is a {value!r}, not a STIX bundle")
        sep = reader.peek()
        if sep == ",":
            reader.pos += 1
            continue
        reader.expect("}", "or ',' after a member of the bundle")
        if reader.peek() != "":
            raise StreamError("there is more data after the bundle")
        return
