"""Path canonicalisation: everything doubtful is refused before any routing or decision."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ztgw.gateway.dataplane.paths import PathRejected, canonical_path


@pytest.mark.parametrize("raw,expected", [
    (b"/api/population/persons", "/api/population/persons"),
    (b"/api/population/persons/", "/api/population/persons"),
    (b"/api/population/persons/11010519491231002X", "/api/population/persons/11010519491231002X"),
    (b"/api/a/%E4%BA%BA", "/api/a/人"),
])
def test_canonical(raw: bytes, expected: str) -> None:
    assert canonical_path(raw) == expected


@pytest.mark.parametrize("raw", [
    b"/api/../admin", b"/api/./x", b"/api//x", b"/api/%2e%2e/x", b"/api/%2E/x",
    b"/api/a%2fb", b"/api/a%2Fb", b"/api/a%5cb", b"/api/a\\b", b"/api/%252e%252e",
    b"/api/a%00", b"/api/a%0d%0aSet-Cookie:x", b"/api/a;jsessionid=1", b"/api/a%3bx",
    b"/api/%c0%ae%c0%ae/x",  # overlong UTF-8 '.'
    b"/api/%ff", b"/api/a%2", b"/api/a%zz", b"api/x", b"", b"/api/\x01", b"/api/a b",
    b"/" + b"a" * 3000,
])
def test_rejected(raw: bytes) -> None:
    with pytest.raises(PathRejected):
        canonical_path(raw)


@given(st.binary(max_size=64))
def test_never_crashes_and_output_has_no_dot_segments(tail: bytes) -> None:
    try:
        out = canonical_path(b"/api/" + tail)
    except PathRejected:
        return
    segments = out.split("/")[1:]
    assert all(s not in ("", ".", "..") for s in segments)
    assert "\\" not in out and ";" not in out and "\x00" not in out
