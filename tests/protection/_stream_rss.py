"""Child process for the streaming memory test: mask N bytes of NDJSON, print peak RSS.

Run as ``python _stream_rss.py TOTAL_BYTES``; prints one JSON line
``{"in": bytes, "out": bytes, "records": n, "maxrss_mb": x, "baseline_mb": y}``.
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
    baseline = peak_rss_mb()
    stream = BodyStream(Pipeline(plan), fmt)
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
