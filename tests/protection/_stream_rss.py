"""Child process for the streaming memory test: mask N bytes of NDJSON, print peak RSS.

Run as ``python _stream_rss.py TOTAL_BYTES [ndjson|json] [mask|dataplane]``; prints one JSON
line ``{"in": bytes, "out": bytes, "records": n, "maxrss_mb": x, "baseline_mb": y}``.
``dataplane`` streams through the data plane's plan (``stream_pipeline``): a row filter,
a projection, field and detector masking and the watermark.
"""

from __future__ import annotations

import copy
import resource
import sys

import orjson

from ztgw.gateway.demo.data import get_dataset
from ztgw.gateway.protection.masking import MaskPlan
from ztgw.gateway.protection.streaming import BodyStream, Pipeline


def peak_rss_mb() -> float:
    """VmHWM: the peak RSS of *this* program image. ``ru_maxrss`` would also count the
    parent's RSS at fork time (Linux keeps the high-water mark across execve)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    total = int(sys.argv[1])
    fmt = sys.argv[2] if len(sys.argv) > 2 else "ndjson"
    recs = copy.deepcopy(get_dataset("persons")[:2000])
    block = b"".join(orjson.dumps(r) + b"\n" for r in recs)
    if fmt == "json":
        block = block.replace(b"\n", b",")
    plan = MaskPlan.from_obligation({"fields": {"id_number": {"strategy": "keep", "first": 6, "last": 4},
                                                "name": {"strategy": "keep", "first": 1},
                                                "mobile": {"strategy": "redact"}}})
    pipe = Pipeline(plan)
    if (sys.argv[3] if len(sys.argv) > 3 else "mask") == "dataplane":
        from ztgw.gateway.dataplane.obligations import build_plan, start_watermark, stream_pipeline
        from ztgw.gateway.protection.keys import ProtectionKeys
        from ztgw.gateway.protection.watermark import Watermarker
        from ztgw.policies.domain import Decision, Obligation

        keys = ProtectionKeys(b"r" * 32)
        districts = sorted({r["district_code"] for r in recs})[1:]  # all but one district
        rplan = build_plan(Decision("allow", "t", "r", obligations=(
            Obligation("row_filter", {"field": "district_code", "in": districts}),
            Obligation("project", {"fields": ["id_number", "name", "mobile", "address", "birth_date"]}),
            Obligation("mask", {"fields": {"name": {"strategy": "pseudonym"},
                                           "birth_date": {"strategy": "generalize", "to": "year"}},
                                "detectors": {"cn_id_number": {"strategy": "token"},
                                              "cn_mobile": {"strategy": "keep", "first": 3, "last": 4}}}),
            Obligation("watermark", {"scheme": "recipient"}))), keys)
        start_watermark(rplan, Watermarker(keys.watermark), "alice", "req", "persons")
        pipe = stream_pipeline(rplan, None)
    baseline = peak_rss_mb()
    stream = BodyStream(pipe, fmt)
    sent = out = 0
    if fmt == "json":
        out += len(stream.feed(b'{"page":1,"items":['))
    chunk = 64 * 1024
    while sent < total:
        for i in range(0, len(block), chunk):
            piece = block[i:i + chunk]
            if fmt == "json" and sent + len(block) >= total and i + chunk >= len(block):
                piece = piece[:-1]  # the last record: no trailing comma
            out += len(stream.feed(piece))
        sent += len(block)
        if fmt == "json" and sent >= total:
            break
    if fmt == "json":
        out += len(stream.feed(b"]}"))
    out += len(stream.close())
    peak = peak_rss_mb()
    print(orjson.dumps({"in": sent, "out": out, "records": stream.pipeline.records,
                        "maxrss_mb": peak, "baseline_mb": baseline}).decode())


if __name__ == "__main__":
    main()
