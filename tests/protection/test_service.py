"""The data-plane façade: keys + registry under HOME, one pipeline per response."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from ztgw.gateway.demo.data import get_dataset
from ztgw.gateway.protection.masking import UnenforceableMask
from ztgw.gateway.protection.service import Protection


def test_pipeline_masks_marks_and_registers(tmp_path: Path) -> None:
    prot = Protection.open(tmp_path)
    page = orjson.dumps({"items": get_dataset("persons")[:80], "page": 1, "size": 80, "total": 80})
    pipe = prot.pipeline({"types": {"cn_id_number": {"strategy": "token"}},
                          "fields": {"mobile": {"strategy": "keep", "first": 3, "last": 4}}},
                         recipient="client-1", request_id="req-1", dataset="persons")
    out = orjson.loads(gzip.decompress(pipe.body(gzip.compress(page), "json", "gzip")))
    assert pipe.records == 80 and pipe.touched == {"id_number", "mobile"}
    assert all(r["mobile"][3:7] == "****" for r in out["items"])
    assert pipe.watermark is not None and pipe.watermark.bits > 80
    # a second process opening the same HOME traces the leak
    again = Protection.open(tmp_path)
    res = again.watermarker.trace(out["items"][:50])
    assert (res.recipient, res.request_id) == ("client-1", "req-1")
    assert res.attributed[0].issue.watermark_id == pipe.watermark.watermark_id


def test_unenforceable_before_any_data(tmp_path: Path) -> None:
    prot = Protection.open(tmp_path)
    with pytest.raises(UnenforceableMask):
        prot.pipeline({"fields": {"a": {"strategy": "rot13"}}}, recipient="c", request_id="r")
    assert prot.watermarker.registry is not None and prot.watermarker.registry.count() == 0


def test_no_mask_no_watermark(tmp_path: Path) -> None:
    pipe = Protection.open(tmp_path).pipeline(None, recipient="c", request_id="r", watermark=False)
    body = orjson.dumps([{"a": "北京市朝阳区建国路88号", "b": 1.25}])
    assert orjson.loads(pipe.body(body, "json")) == orjson.loads(body)
