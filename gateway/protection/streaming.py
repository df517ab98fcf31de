"""Streaming protection of response bodies with bounded memory.

A :class:`BodyStream` is fed the upstream body chunk by chunk and returns the protected
bytes as soon as whole records are available, so memory holds one record and one chunk,
never the body::

    stream = BodyStream(Pipeline(mask_plan, watermark_plan), fmt="ndjson", encoding="gzip")
    for chunk in upstream:
        send(stream.feed(chunk))
    send(stream.close())

- ``fmt``: ``json`` (an array of records, or a page object holding that array under a
  container key — ``items``, ``data``, ``data.list`` …, see :func:`.masking.records_path`;
  the envelope passes through, masked when the mask selects something in it), ``ndjson`` or
  ``csv`` (header row first).
- ``encoding``: the upstream ``Content-Encoding`` — ``identity``, ``gzip``, ``deflate`` or
  ``br``; the output is re-encoded the same way, so the header stays true.
- Limits: a single record larger than ``max_record`` bytes, or a decoded body larger than
  ``max_output`` bytes (decompression bombs), raise :class:`StreamError`: the caller must
  abort the response, never pass the rest through unprotected.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import brotli
import orjson

from .masking import (
    MAX_ENVELOPE_DEPTH,
    RECORD_CONTAINERS,
    MaskPlan,
    get_path,
    holds_records,
    records_path,
    set_path,
)
from .watermark import WatermarkPlan

__all__ = ["ENCODINGS", "BodyStream", "Pipeline", "RecordWithheld", "Selector", "StreamError"]

Encoding = Literal["identity", "gzip", "deflate", "br"]
ENCODINGS = ("identity", "gzip", "deflate", "br")
MAX_RECORD = 16 * 1024 * 1024  # one record larger than this is not an API record
SLICE = 256 * 1024  # decoded bytes handled at a time


class StreamError(ValueError):
    """The body cannot be protected (malformed, too large, bad encoding): abort it."""


class RecordWithheld(StreamError):
    """The body is one record (not a list) and the selection withholds it (answer 404)."""


class Selector(Protocol):
    """Record selection before masking — row filter, row limit, projection (the data plane's
    :class:`ztgw.gateway.dataplane.obligations.ResponsePlan` supplies one). Returning None
    drops the record."""

    may_drop: bool  # whether records may be withheld (then a page's "total" is nulled)

    def record(self, rec: dict[str, Any]) -> dict[str, Any] | None: ...

    def csv_header(self, header: list[str]) -> list[str]: ...

    def csv_row(self, row: list[str]) -> list[str] | None: ...


# a page's count includes records the selection may drop: it is nulled, as apply_json does
_TOTAL = re.compile(rb'("total"\s*:\s*)-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?')


def _null_total(part: bytes) -> bytes:
    return _TOTAL.sub(rb"\1null", part)


def _null_totals(node: Any, skip: Any, depth: int = 0) -> None:
    """A parsed envelope's counts (``total`` anywhere outside the records), as :func:`_null_total`."""
    if type(node) is dict and depth < MAX_ENVELOPE_DEPTH + 1:
        for k, v in node.items():
            if k == "total" and type(v) in (int, float):
                node[k] = None
            elif type(v) is dict and v is not skip:
                _null_totals(v, skip, depth + 1)


# ------------------------------------------------------------------ what happens per record


@dataclass(slots=True)
class Pipeline:
    """mask → watermark, record by record (either step may be absent)."""

    mask: MaskPlan | None = None
    watermark: WatermarkPlan | None = None
    records: int = 0
    touched: set[str] = field(default_factory=set)
    select: Selector | None = None  # row filter / limit / projection, before masking
    dropped: int = 0  # records the selection withheld
    _csv_header: list[str] = field(default_factory=list)
    _csv_cols: list[Any] = field(default_factory=list)

    @property
    def nulls_total(self) -> bool:
        return self.select is not None and self.select.may_drop

    def record(self, rec: Any) -> Any:
        """The record to send (masked and marked in place), or None when it is withheld."""
        if isinstance(rec, dict):
            if self.select is not None:
                rec = self.select.record(rec)
                if rec is None:
                    self.dropped += 1
                    return None
            if self.mask is not None:
                self.touched |= self.mask.record(rec)
            if self.watermark is not None:
                self.watermark.record(rec)
            self.records += 1
        elif self.select is not None:
            raise StreamError("a record is not an object")
        return rec

    def batch(self, recs: list[Any]) -> list[Any]:
        """:meth:`record` for a list (one decoded slice of a stream): the same result, but
        masking and marking run column by column over the batch. Returns what to send."""
        if self.select is not None:
            if any(type(r) is not dict for r in recs):
                raise StreamError("a record is not an object")
            select = self.select.record
            kept = [r2 for r in recs if (r2 := select(r)) is not None]
            self.dropped += len(recs) - len(kept)
            recs = kept
        if self.mask is not None:
            n, touched = self.mask.records(recs)
            self.touched |= touched
        else:
            n = sum(1 for r in recs if type(r) is dict)
        if self.watermark is not None:
            self.watermark.records(recs)
        self.records += n
        return recs

    def csv_header(self, header: list[str]) -> list[str]:
        """The header to send (projected when there is a selection)."""
        if self.select is not None:
            header = self.select.csv_header(header)
        self._csv_header = header
        if self.mask is not None:
            self._csv_cols = self.mask.csv_columns(header)
            self.touched |= {header[i] for i, _ in self._csv_cols}
        return header

    def csv_row(self, row: list[str]) -> list[str] | None:
        """The row to send (masked and marked in place), or None when it is withheld."""
        if not row:
            return None  # a blank line is no record (csv.DictReader skips it too)
        if self.select is not None:
            selected = self.select.csv_row(row)
            if selected is None:
                self.dropped += 1
                return None
            row = selected
        if self.mask is not None:
            self.mask.csv_row(self._csv_header, self._csv_cols, row, self.touched)
        if self.watermark is not None:
            self.watermark.csv_row(row)
        self.records += 1
        return row

    def document(self, doc: Any) -> Any:
        """A whole parsed JSON answer: its records (:func:`.masking.records_path`: a bare list,
        the list under a container key such as ``items``, ``data.list`` or ``result.records``,
        else one record) selected, masked and marked as a batch; when masking, everything
        outside the records (the envelope, objects nested in a single record) is masked by
        name, path and detector at any depth (:meth:`MaskPlan.deep`), so an answer of a shape
        this module does not know never leaves with a selected value in clear."""
        path, is_list = records_path(doc, weak=self.select is None)
        node = get_path(doc, path)
        if is_list:
            kept = self.batch(node)
            doc = set_path(doc, path, kept)
            if self.select is not None and holds_records(doc, skip=kept):
                raise StreamError("the answer holds records outside its records array")
            if self.mask is not None:
                self.mask.deep(doc, self.touched, skip=kept)
            if self.dropped and path:
                _null_totals(doc, kept)
            return doc
        if type(node) is not dict:
            if self.select is not None:
                raise StreamError("the answer is not a record or a list of records")
            if self.mask is not None:
                self.mask.deep(doc, self.touched)
            return doc
        rec = self.record(node)
        if rec is None:
            raise RecordWithheld("the record is outside what the caller may see")
        doc = set_path(doc, path, rec)
        if self.mask is not None:
            self.mask.nested(rec, self.touched)
            if path:
                self.mask.deep(doc, self.touched, skip=rec)
        return doc

    # whole bodies (no streaming)
    def json_body(self, body: bytes) -> bytes:
        """A whole JSON body parsed at once (fastest when the body is already in memory)."""
        return orjson.dumps(self.document(orjson.loads(body)))

    def body(self, body: bytes, fmt: str, encoding: str = "identity", *,
             max_output: int | None = None) -> bytes:
        """A whole body of any format and content coding, through :class:`BodyStream`."""
        stream = BodyStream(self, fmt, encoding, max_output=max_output)
        return stream.feed(body) + stream.close()


# ------------------------------------------------------------------ content codings


class _Decoder:
    def __init__(self, encoding: str, max_output: int | None) -> None:
        if encoding not in ENCODINGS:
            raise StreamError(f"unsupported content encoding {encoding!r}")
        self.encoding = encoding
        self.max_output = max_output
        self.total = 0
        self._first = True
        self._z: Any = None
        self._br: Any = None
        if encoding == "gzip":
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "br":
            self._br = brotli.Decompressor()

    def _count(self, out: bytes) -> bytes:
        self.total += len(out)
        if self.max_output is not None and self.total > self.max_output:
            raise StreamError("the decoded body is too large")
        return out

    def feed(self, data: bytes) -> Iterator[bytes]:
        try:
            if self.encoding == "identity":
                for i in range(0, len(data), SLICE):
                    yield self._count(data[i:i + SLICE])
                return
            if self.encoding == "br":
                yield self._count(self._br.process(data, output_buffer_limit=SLICE))
                while not self._br.can_accept_more_data():
                    yield self._count(self._br.process(b"", output_buffer_limit=SLICE))
                return
            if self._z is None:  # deflate: zlib-wrapped per RFC 9110, raw from some servers
                raw = bool(data) and (data[0] & 0x0F) != 8
                self._z = zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
            buf = data
            while buf:
                yield self._count(self._z.decompress(buf, SLICE))
                buf = self._z.unconsumed_tail
        except (zlib.error, brotli.error) as exc:
            raise StreamError(f"bad {self.encoding} body: {exc}") from None

    def close(self) -> Iterator[bytes]:
        try:
            if self.encoding == "br":
                while not self._br.is_finished():
                    out = self._br.process(b"", output_buffer_limit=SLICE)
                    if not out:
                        raise StreamError("truncated br body")
                    yield self._count(out)
            elif self._z is not None:
                yield self._count(self._z.flush())
                if not self._z.eof:
                    raise StreamError(f"truncated {self.encoding} body")
        except (zlib.error, brotli.error) as exc:
            raise StreamError(f"bad {self.encoding} body: {exc}") from None


class _Encoder:
    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._z: Any = None
        self._br: Any = None
        if encoding == "gzip":
            self._z = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._z = zlib.compressobj(6, zlib.DEFLATED, zlib.MAX_WBITS)
        elif encoding == "br":
            self._br = brotli.Compressor(quality=4)

    def feed(self, data: bytes) -> bytes:
        if not data:
            return b""
        if self._z is not None:
            return self._z.compress(data)  # type: ignore[no-any-return]
        if self._br is not None:
            return self._br.process(data)  # type: ignore[no-any-return]
        return data

    def close(self) -> bytes:
        if self._z is not None:
            return self._z.flush()  # type: ignore[no-any-return]
        if self._br is not None:
            return self._br.finish()  # type: ignore[no-any-return]
        return b""


# ------------------------------------------------------------------ record framing

# a string token may be cut by the chunk end: it then has no closing quote (see _complete)
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*(?P<close>")?|[\[\]{}]')
_WS = b" \t\r\n"


def _complete(m: re.Match[bytes]) -> bool:
    """A string token is complete when its closing quote matched (not an escaped one)."""
    return m.group("close") is not None


# stands for the records array while a page's envelope is parsed on its own
_SENTINEL = "\u0000ztgw:records\u0000"
_SENTINEL_JSON = orjson.dumps(_SENTINEL)


class _JsonFramer:
    """Finds the records array — the top-level array, or the first array reached through
    :data:`.masking.RECORD_CONTAINERS` keys (``items``, ``data.list`` …), as
    :func:`.masking.records_path` does — and hands each element to the pipeline. The envelope
    around it passes through byte for byte unless a mask changes something in it (then it is
    re-serialised, masked). A document with another array before its records (the records
    might be elsewhere) or without a records array is protected whole at the end
    (:meth:`Pipeline.document`), bounded by ``max_record``."""

    def __init__(self, pipe: Pipeline, max_record: int) -> None:
        self.pipe = pipe
        self.max_record = max_record
        self.buf = bytearray()
        self.state = "prefix"  # prefix → array → suffix, or prefix → whole
        self.scan = 0  # prefix: bytes of buf already tokenised
        self.stack: list[bool] = []  # prefix: open objects, True when on the container path
        self.last_key = b""
        self.prefix = b""  # the envelope before the records array, as received
        self._resume: tuple[int, int] | None = None  # (scan position, depth) of a partial element
        self.sent = 0  # records written into the array

    def feed(self, data: bytes) -> bytes:
        self.buf += data
        out = bytearray()
        if self.state == "prefix":
            self._prefix(out)
        if self.state == "array":
            self._array(out)
        if self.state == "suffix" and self.pipe.select is None and self.pipe.mask is None:
            out += self.buf
            self.buf.clear()
        if len(self.buf) > self.max_record:
            raise StreamError("a JSON record is too large")
        return bytes(out)

    def _prefix(self, out: bytearray) -> None:
        start = 0
        stack = self.stack
        for m in _TOKEN.finditer(bytes(self.buf), self.scan):
            tok = m.group()
            if tok[0] == 0x22:  # a string
                if not _complete(m):
                    self.scan = m.start()  # continues in the next chunk
                    return
                self.last_key = tok
                continue
            key = self.last_key[1:-1].decode("utf-8", "replace")
            on_path = not stack or (stack[-1] and key in RECORD_CONTAINERS
                                    and len(stack) < MAX_ENVELOPE_DEPTH)
            if tok == b"[":
                if on_path and (not stack or self.last_key):
                    start = m.end()
                    break
                self.state = "whole"  # another array first: the records may be anywhere
                self.scan = len(self.buf)
                return
            if tok == b"{":
                stack.append(on_path and (not stack or bool(self.last_key)))
            elif stack:
                stack.pop()
            self.last_key = b""
        else:
            self.scan = len(self.buf)
            return
        del m  # release the buffer export before resizing
        self.prefix = bytes(self.buf[:start])
        prefix = self._envelope(self.prefix[:-1] + _SENTINEL_JSON + b"}" * len(stack), self.prefix,
                                head=True)
        out += _null_total(prefix) if self.pipe.nulls_total else prefix
        del self.buf[:start]
        self.state = "array"

    def _envelope(self, text: bytes, original: bytes, head: bool) -> bytes:
        """``original`` (the envelope before or after the records array) as it is sent: as
        received, or re-serialised with what the mask selects in it masked."""
        mask = self.pipe.mask
        if mask is None and (head or self.pipe.select is None):
            return original
        try:
            env = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise StreamError(f"not valid JSON: {exc}") from None
        if not head and self.pipe.select is not None and holds_records(env):
            raise StreamError("the answer holds records outside its records array")
        if mask is None:
            return original
        touched: set[str] = set()
        mask.deep(env, touched, skip=_SENTINEL)
        if not touched:
            return original
        self.pipe.touched |= touched
        parts = orjson.dumps(env).split(_SENTINEL_JSON)
        if len(parts) != 2:
            raise StreamError("the answer's envelope cannot be masked")
        return parts[0] + b"[" if head else b"]" + parts[1]

    def _array(self, out: bytearray) -> None:
        """Parse every complete element of the buffer, then protect them as one batch."""
        buf = self.buf
        i = 0
        n = len(buf)
        recs: list[Any] = []
        consumed = 0  # bytes of complete elements (and separators) handled in this call
        while True:
            while i < n and (buf[i] in _WS or buf[i] == 0x2C):
                i += 1
            if i >= n:
                consumed = i
                break
            if buf[i] == 0x5D:  # ']'
                consumed = i
                self.state = "suffix"
                break
            end = self._element_end(buf, i)
            if end is None:
                break
            if end - i > self.max_record:
                raise StreamError("a JSON record is too large")
            recs.append(orjson.loads(bytes(buf[i:end])))
            i = consumed = end
        del buf[:consumed]
        if self._resume is not None:  # the partial element's scan state moves with the buffer
            self._resume = (self._resume[0] - consumed, self._resume[1])
        for rec in self.pipe.batch(recs):
            if self.sent:  # separators are written afresh: withheld records leave no gap
                out += b","
            out += orjson.dumps(rec)
            self.sent += 1

    def _element_end(self, buf: bytearray, i: int) -> int | None:
        """End offset of the element starting at ``i``, or None if it is not complete yet.

        An incomplete element's tokenizer state is kept, so a large record arriving in many
        chunks is scanned once (linear), not once per chunk."""
        first = buf[i]
        if first not in b'{["':  # a bare number or literal ends at ',', ']' or space
            for k in range(i, len(buf)):
                if buf[k] in b",]" or buf[k] in _WS:
                    return k
            return None
        if self._resume is None:
            if first == 0x7B:  # '{': fast path — a flat object ends at its first '}'
                j = buf.find(b"}", i)
                if j >= 0:
                    try:
                        orjson.loads(bytes(buf[i:j + 1]))
                        return j + 1
                    except orjson.JSONDecodeError:
                        pass
            pos, depth = i, 0
        else:
            pos, depth = self._resume
        for m in _TOKEN.finditer(buf, pos):
            tok = m.group()
            if tok[0] == 0x22:
                if not _complete(m):
                    self._resume = (m.start(), depth)
                    return None
                if depth == 0:
                    self._resume = None
                    return m.end()
                continue
            depth += 1 if tok in (b"{", b"[") else -1
            if depth == 0:
                self._resume = None
                return m.end()
        self._resume = (len(buf), depth)
        return None

    def close(self) -> bytes:
        if self.state in ("prefix", "whole"):
            # no records array found on the way: the whole document, bounded by max_record
            if not self.buf.strip():
                return b""
            try:
                doc = orjson.loads(bytes(self.buf))
            except orjson.JSONDecodeError as exc:
                raise StreamError(f"not valid JSON: {exc}") from None
            self.buf.clear()
            return orjson.dumps(self.pipe.document(doc))
        if self.state == "array":
            raise StreamError("the JSON array is not terminated")
        suffix = bytes(self.buf)  # ']' and the rest of the page object
        self.buf.clear()
        if self.pipe.select is None and self.pipe.mask is None:
            return suffix  # passed through as it came (see feed)
        if suffix[:1] != b"]":
            raise StreamError("the JSON array is not terminated")
        out = self._envelope(self.prefix[:-1] + _SENTINEL_JSON + suffix[1:], suffix, head=False)
        return _null_total(out) if self.pipe.nulls_total else out


class _NdjsonFramer:
    def __init__(self, pipe: Pipeline, max_record: int) -> None:
        self.pipe, self.max_record, self.buf = pipe, max_record, bytearray()

    def _lines(self, lines: list[bytes]) -> bytes:
        recs = []
        for line in lines:
            if len(line) > self.max_record:
                raise StreamError("an NDJSON line is too long")
            if line.strip():
                recs.append(orjson.loads(line))
        return b"".join(orjson.dumps(rec) + b"\n" for rec in self.pipe.batch(recs))

    def feed(self, data: bytes) -> bytes:
        self.buf += data
        cut = self.buf.rfind(b"\n")
        if cut < 0:
            if len(self.buf) > self.max_record:
                raise StreamError("an NDJSON line is too long")
            return b""
        lines = bytes(self.buf[:cut])
        del self.buf[:cut + 1]
        return self._lines(lines.split(b"\n"))

    def close(self) -> bytes:
        out = self._lines([bytes(self.buf)])
        self.buf.clear()
        return out


class _CsvFramer:
    def __init__(self, pipe: Pipeline, max_record: int) -> None:
        self.pipe, self.max_record = pipe, max_record
        self.text = ""
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.header: list[str] | None = None
        self.quotes = 0  # quote count of self.text before scan
        self.scan = 0

    def _rows(self, text: str) -> bytes:
        out = io.StringIO(newline="")
        writer = csv.writer(out, lineterminator="\r\n")
        for row in csv.reader(io.StringIO(text, newline="")):
            if self.header is None:
                self.header = row
                writer.writerow(self.pipe.csv_header(row))
                continue
            sent = self.pipe.csv_row(row)
            if sent is not None:
                writer.writerow(sent)
        return out.getvalue().encode("utf-8")

    def feed(self, data: bytes) -> bytes:
        self.text += self.decoder.decode(data)
        # complete rows end at the last newline outside quotes (RFC 4180 §2.6)
        cut, q, pos = -1, self.quotes, self.scan
        while (nl := self.text.find("\n", pos)) >= 0:
            q += self.text.count('"', pos, nl)
            if q % 2 == 0:
                cut = nl
            pos = nl + 1
        if cut < 0:
            self.quotes, self.scan = q, pos
            if len(self.text) > self.max_record:
                raise StreamError("a CSV row is too long")
            return b""
        complete, self.text = self.text[:cut + 1], self.text[cut + 1:]
        self.scan = pos - (cut + 1)
        self.quotes = self.text.count('"', 0, self.scan)
        if len(self.text) > self.max_record:
            raise StreamError("a CSV row is too long")
        return self._rows(complete)

    def close(self) -> bytes:
        self.text += self.decoder.decode(b"", final=True)
        if self.text.count('"') % 2:
            raise StreamError("a quoted CSV field is not terminated")
        out = self._rows(self.text) if self.text.strip() else b""
        self.text = ""
        return out


# ------------------------------------------------------------------ the stream


class BodyStream:
    """Incremental body protection: ``feed`` chunks, then ``close``."""

    def __init__(self, pipeline: Pipeline, fmt: str, encoding: str = "identity", *,
                 max_record: int = MAX_RECORD, max_output: int | None = None) -> None:
        framers = {"json": _JsonFramer, "ndjson": _NdjsonFramer, "csv": _CsvFramer}
        if fmt not in framers:
            raise StreamError(f"unsupported body format {fmt!r}")
        self.pipeline = pipeline
        self._framer: Any = framers[fmt](pipeline, max_record)
        self._dec = _Decoder(encoding or "identity", max_output)
        self._enc = _Encoder(encoding or "identity")

    def feed(self, chunk: bytes) -> bytes:
        out = bytearray()
        try:
            for piece in self._dec.feed(chunk):
                out += self._enc.feed(self._framer.feed(piece))
        except (orjson.JSONDecodeError, UnicodeDecodeError, csv.Error) as exc:
            raise StreamError(f"malformed body: {exc}") from None
        return bytes(out)

    def close(self) -> bytes:
        out = bytearray()
        try:
            for piece in self._dec.close():
                out += self._enc.feed(self._framer.feed(piece))
            out += self._enc.feed(self._framer.close())
        except (orjson.JSONDecodeError, UnicodeDecodeError, csv.Error) as exc:
            raise StreamError(f"malformed body: {exc}") from None
        out += self._enc.close()
        return bytes(out)
