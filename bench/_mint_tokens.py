"""Mint N distinct, valid access tokens with a ztgw home's own signing key (cold-cache runs)."""

import sys
from pathlib import Path

from ztgw.gateway.identity.keys import KeyRing
from ztgw.gateway.identity.tokens import TokenIssuer

home, issuer, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
alg = sys.argv[4] if len(sys.argv) > 4 else "ES256"  # ES256 or SM2SM3
tokens = TokenIssuer(KeyRing.load_or_create(home / "keys"), issuer, "urn:ztgw:data-api", 3600,
                     alg=alg)
out = sys.stdout
for _ in range(n):
    out.write(tokens.issue_access_token(subject="client:demo-analytics", client_id="demo-analytics",
                                        scope="data.read") + "\n")
