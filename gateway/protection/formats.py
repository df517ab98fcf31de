"""Reading record files for the offline tools (``scan pii``, ``watermark trace``).

The format is judged by content, not by the file name: a leaked file is often renamed.
JSON (an array, a page ``{"items": [...]}`` or one object), NDJSON (one JSON value a line)
and CSV (header row; UTF-8 with or without BOM) are recognised. NDJSON and CSV are read
one record at a time; a JSON document is parsed whole, up to :data:`MAX_JSON_BYTES`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import orjson

from .masking import records_of

__all__ = ["MAX_JSON_BYTES", "FileFormatError", "Format", "iter_records", "sniff"]

Format = Literal["json", "ndjson", "csv"]
MAX_JSON_BYTES = 512 * 1024 * 1024  # a larger single document should be NDJSON
_SNIFF = 64 * 1024
csv.field_size_limit(16 * 1024 * 1024)


class FileFormatError(ValueError):
    """The file is not readable as JSON, NDJSON or CSV."""


def sniff(path: Path) -> Format:
    with path.open("rb") as fh:
        head = fh.read(_SNIFF)
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not text:
        raise FileFormatError("the file is empty")
    if text[:1] == b"[":
        return "json"
    if text[:1] == b"{":
        first, _, rest = text.partition(b"\n")
        try:
            orjson.loads(first)
        except orjson.JSONDecodeError:
            return "json"  # an object spread over lines
        return "ndjson" if rest.strip()[:1] == b"{" else "json"
    return "csv"


def _distinct(header: list[str]) -> list[str]:
    """Column names made distinct: a repeated header is named ``name#2``, ``name#3`` … so no
    column's cells are folded into another's (each is scanned and traced on its own)."""
    seen: dict[str, int] = {}
    out = []
    for name in header:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out


def iter_records(path: Path, fmt: Format | None = None) -> Iterator[dict[str, Any]]:
    """Every record of the file as a dict (CSV cells are strings)."""
    fmt = fmt or sniff(path)
    try:
        if fmt == "json":
            if path.stat().st_size > MAX_JSON_BYTES:
                raise FileFormatError("JSON document too large: convert it to NDJSON")
            doc = orjson.loads(path.read_bytes())
            yield from (r for r in records_of(doc) if isinstance(r, dict))
        elif fmt == "ndjson":
            with path.open("rb") as fh:
                for line in fh:
                    if line.strip():
                        rec = orjson.loads(line)
                        if isinstance(rec, dict):
                            yield rec
        else:
            with path.open("r", encoding="utf-8-sig", newline="") as fh:
                reader = csv.reader(fh)
                header = next(reader, None)
                if not header:
                    return
                names = _distinct(header)
                for row in reader:
                    yield dict(zip(names, row, strict=False))
    except orjson.JSONDecodeError as exc:
        raise FileFormatError(f"not valid {fmt.upper()}: {exc}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise FileFormatError(f"not readable as UTF-8 {fmt.upper()}: {exc}") from None

