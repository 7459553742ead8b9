"""Read the objects of a STIX bundle from a byte stream one at a time, in bounded memory.

Only the top level is walked by hand ({ "key": value, ..., "objects": [ obj, obj, ... ] }); each
element's extent is found with the C JSON decoder when it is whole in the buffer, else by a scan
that carries its state from chunk to chunk (linear in the bytes, however big or deep the element),
and the element is then parsed strictly
(duplicate keys, I-JSON numbers, depth) on its own, so one bad object is reported without losing
the others. Memory holds one object at a time (at most `max_object_bytes`) plus one read chunk.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from exchange.errors import InvalidJsonError
from exchange.intel.strictjson import loads_strict

_WS = " \t\r\n"
_DECODER = json.JSONDecoder()
# The bundle's members other than `objects` (type, id, spec_version) are small; together they may
# take at most this much, since they are kept while the objects stream past.
MAX_HEADER_BYTES = 1024 * 1024


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

    def _read(self) -> str | None:
        """The next chunk as text; None at the end of the stream."""
        if self.eof:
            return None
        try:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self.eof = True
                return self._decoder.decode(b"", final=True) or None
            text = self._decoder.decode(chunk)
        except UnicodeDecodeError:
            raise StreamError("the feed is not UTF-8 text") from None
        if self.first and text:
            text, self.first = text.removeprefix("\ufeff"), False
        return text

    def more(self) -> bool:
        """Read another chunk; False at the end of the stream."""
        text = self._read()
        if text is None:
            return False
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

    def value(self, limit: int | None = None, too_large: str | None = None) -> tuple[Any, str]:
        """The next JSON value and its text (None and the text for one nested too deep for the
        decoder: the strict parse refuses just that one); StreamError past `limit` characters."""
        limit = self.max if limit is None else limit
        too_large = too_large or f"an element is larger than {limit:,} bytes"
        if self.peek() == "":
            raise StreamError("the data ends inside the bundle, where a value should be")
        # Most values are whole in the buffer already: the C decoder takes them at once.
        try:
            value, end = _DECODER.raw_decode(self.buf, self.pos)
        except (json.JSONDecodeError, RecursionError):
            pass
        else:
            if end < len(self.buf) or self.eof or not isinstance(value, (int, float)):
                if end - self.pos > limit:
                    raise StreamError(too_large)
                text = self.buf[self.pos : end]
                self.pos = end
                return value, text
        # Not whole yet (or too deep, or not JSON): find where it ends, the scan state kept from
        # chunk to chunk so each character is looked at once, then decode it once. Asking the
        # decoder again after every chunk made one big element cost quadratic time.
        text = self._extent(limit, too_large)
        try:
            value, end = _DECODER.raw_decode(text)
        except RecursionError:
            return None, text
        except json.JSONDecodeError as exc:
            raise StreamError(f"a value is not JSON ({exc.msg})") from None
        if end != len(text):
            raise StreamError("a value is not JSON (extra data inside it)")
        return value, text

    def _extent(self, limit: int, too_large: str) -> str:
        """The text of the value at self.pos, read on until it ends; self.pos is then after it."""
        scan = _Scan(self.buf[self.pos])
        parts: list[str] = []
        size = 0
        text, start, offset = self.buf, self.pos, self.pos
        while True:
            end = scan.feed(text, offset)
            if end is not None:
                parts.append(text[start:end])
                self.buf, self.pos = text, end
                if size + end - start > limit:
                    raise StreamError(too_large)
                return "".join(parts)
            parts.append(text[start:])
            size += len(text) - start
            if size > limit:
                raise StreamError(too_large)
            read = self._read()
            if read is None:
                if scan.scalar:  # a number at the very end of the data
                    self.buf, self.pos = "", 0
                    return "".join(parts)
                raise StreamError("the data ends inside a value")
            text, start, offset = read, 0, 0


_IN_STRING = re.compile(r'["\\]')
_SCALAR_END = re.compile(r"[\s,\]}]")


class _Scan:
    """Where a JSON value ends, fed chunk by chunk: the state (depth, inside a string, after a
    backslash) is kept between chunks. Brackets between strings are counted with str.count while
    the depth cannot reach zero in them, and walked one by one only where it might."""

    def __init__(self, first: str) -> None:
        self.scalar = first not in '[{"'
        self.depth = 0
        self.in_string = False
        self.escaped = False

    def feed(self, text: str, i: int) -> int | None:
        """The index in `text` just after the value's end, or None if it goes on after `text`."""
        if self.scalar:
            found = _SCALAR_END.search(text, i)
            return found.start() if found else None
        n = len(text)
        while i < n:
            if self.in_string:
                if self.escaped:
                    self.escaped, i = False, i + 1
                    continue
                found = _IN_STRING.search(text, i)
                if found is None:
                    return None
                i = found.end()
                if found.group() == "\\":
                    self.escaped = True
                    continue
                self.in_string = False
                if self.depth == 0:
                    return i
                continue
            quote = text.find('"', i)
            stop = n if quote < 0 else quote
            segment = text[i:stop]
            closers = segment.count("]") + segment.count("}")
            if closers < self.depth:
                self.depth += segment.count("[") + segment.count("{") - closers
            else:
                for k, char in enumerate(segment):
                    if char in "[{":
                        self.depth += 1
                    elif char in "]}":
                        self.depth -= 1
                        if self.depth == 0:
                            return i + k + 1
            if quote < 0:
                return None
            self.in_string, i = True, quote + 1
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
    header_left = MAX_HEADER_BYTES
    too_large = f"the bundle's members other than objects take more than {MAX_HEADER_BYTES:,} bytes"
    while True:
        key, text = reader.value(header_left, too_large)
        header_left -= len(text)
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
            value, text = reader.value(header_left, too_large)
            header_left -= len(text)
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
