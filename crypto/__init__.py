"""ztgw commercial cryptography: SM2 / SM3 / SM4 (GB/T 32918, 32905, 32907)."""
