"""Data owners and data subjects (issue 6): access requests with approval, scoped grants,
citizen consent with SM2-signed receipts, and the web console.  See docs/grants.md.

:class:`Grants` wires the pieces for the composition root (``gateway/app.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..catalogue import Catalogue
from ..identity.directory import Directory
from .index import EntitlementIndex
from .receipts import ReceiptSigner, load_or_create_receipt_key
from .service import GrantService
from .store import GrantStore


class Grants:
    """Store + in-memory index + service, built once per process."""

    def __init__(self, directory: Directory, catalogue: Catalogue, keys_dir: Path,
                 emit: Callable[[dict[str, Any]], None],
                 observe_approval: Callable[[str, float], None] | None = None) -> None:
        self.store = GrantStore(directory.engine)
        self.index = EntitlementIndex(self.store)
        self.signer = ReceiptSigner(load_or_create_receipt_key(keys_dir))
        self.service = GrantService(self.store, catalogue, directory, self.signer, emit,
                                    observe_approval=observe_approval, on_change=self.index.reload)


__all__ = ["EntitlementIndex", "GrantService", "GrantStore", "Grants"]
