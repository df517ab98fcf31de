"""One object the data plane holds: keys, the watermark registry, and per-response pipelines.

::

    protection = Protection.open(settings.home, settings.keys_dir)      # at start-up
    pipe = protection.pipeline(mask_params, recipient=client_id,        # per response
                               request_id=request_id, dataset=dataset)  # may raise
    body = pipe.body(body, fmt, content_encoding)                       # or BodyStream(pipe, …)
    audit["ztgw"]["watermark"] = {"id": pipe.watermark.watermark_id}
    audit["ztgw"]["masking"] = {"fields": sorted(pipe.touched)}

``mask_params`` is the ``mask`` obligation's parameters (or None when nothing is masked);
anything unenforceable raises :class:`UnenforceableMask` before the upstream is called.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .keys import ProtectionKeys
from .masking import MaskPlan
from .streaming import Pipeline
from .watermark import REGISTRY_FILE, Watermarker, WatermarkRegistry

__all__ = ["Protection"]


@dataclass(slots=True)
class Protection:
    keys: ProtectionKeys
    watermarker: Watermarker

    @classmethod
    def open(cls, home: Path, keys_dir: Path | None = None) -> Protection:
        """Keys from ``keys_dir`` (default ``home/keys``, created if missing) and the registry
        ``home/watermarks.db``."""
        keys = ProtectionKeys.load_or_create(keys_dir or home / "keys")
        return cls(keys, Watermarker(keys.watermark, WatermarkRegistry(home / REGISTRY_FILE)))

    def mask_plan(self, params: Mapping[str, Any]) -> MaskPlan:
        return MaskPlan.from_obligation(params, keys=self.keys)

    def pipeline(self, mask_params: Mapping[str, Any] | None, *, recipient: str, request_id: str,
                 dataset: str = "", watermark: bool = True) -> Pipeline:
        """mask → watermark for one response to ``recipient``."""
        mask = self.mask_plan(mask_params) if mask_params is not None else None
        wm = self.watermarker.plan(recipient, request_id, dataset) if watermark else None
        return Pipeline(mask, wm)
