"""``ztgw crypto …``: SM2 / SM3 / SM4 from the command line (Typer sub-app).

Exit codes: 0 success (or a valid signature), 1 verification failure (invalid signature,
failed authentication), 2 bad input or usage. Keys are PEM files OpenSSL 3 reads and writes
(PKCS#8 / SubjectPublicKeyInfo); SM2 signatures are DER unless ``--raw``. Commands that
report data accept ``--json``.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, BinaryIO, NoReturn

import typer

from . import sm2, sm3, sm4
from .constants import GCM_NONCE_BYTES, SM2_DEFAULT_ID, SM4_BLOCK_BYTES
from .errors import CryptoError, MalformedInput, VerificationFailed

app = typer.Typer(help="Commercial cryptography: SM2, SM3, SM4 (GB/T 32918/32905/32907).",
                  no_args_is_help=True)
sm2_app = typer.Typer(help="SM2 keys, signatures and encryption.", no_args_is_help=True)
sm4_app = typer.Typer(help="SM4 encryption (ECB/CBC/CTR/GCM).", no_args_is_help=True)
app.add_typer(sm2_app, name="sm2")
app.add_typer(sm4_app, name="sm4")

EXIT_INVALID = 1
EXIT_BAD_INPUT = 2

InFile = Annotated[Path, typer.Option("--in", help="Input file.")]
OutFile = Annotated[Path, typer.Option("--out", help="Output file.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
IdOpt = Annotated[str, typer.Option("--id", help="SM2 distinguishing identifier.")]


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _report(as_json: bool, data: dict[str, Any], text: str) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False) if as_json else text)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror}", EXIT_BAD_INPUT)


@contextmanager
def _atomic_output(path: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Write to a temp file next to ``path``; rename only if the block succeeds."""
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.")
    try:
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    try:
        with _atomic_output(path, mode) as fh:
            fh.write(data)
    except OSError as exc:
        _fail(f"cannot write {path}: {exc.strerror}", EXIT_BAD_INPUT)


def _guard(action: Callable[[], None]) -> None:
    """Map the crypto error tree onto exit codes in one place."""
    try:
        action()
    except VerificationFailed as exc:
        _fail(str(exc), EXIT_INVALID)
    except (MalformedInput, CryptoError, ValueError) as exc:
        _fail(str(exc), EXIT_BAD_INPUT)


# --------------------------------------------------------------------------- SM3


@app.command("sm3")
def sm3_command(
    file: Annotated[Path, typer.Argument(help="File to hash ('-' for stdin).")],
    as_json: JsonFlag = False,
) -> None:
    """Print the SM3 digest (hex) of FILE."""
    if str(file) == "-":
        digest = sm3.digest_file(typer.get_binary_stream("stdin"))
    else:
        try:
            with file.open("rb") as fh:
                digest = sm3.digest_file(fh)
        except OSError as exc:
            _fail(f"cannot read {file}: {exc.strerror}", EXIT_BAD_INPUT)
    _report(as_json, {"algorithm": "sm3", "file": str(file), "digest": digest.hex()},
            f"{digest.hex()}  {file}")


# --------------------------------------------------------------------------- SM2


@sm2_app.command("keygen")
def sm2_keygen(
    out: Annotated[Path, typer.Option("--out", help="Private key (PKCS#8 PEM, mode 0600).")],
    pubout: Annotated[Path, typer.Option("--pubout", help="Public key (PEM SPKI).")],
    as_json: JsonFlag = False,
) -> None:
    """Generate an SM2 key pair."""
    key = sm2.generate_key()
    _write(out, key.to_pem(), 0o600)
    _write(pubout, key.public_key().to_pem())
    fp = key.public_key().fingerprint().hex()
    _report(as_json, {"private_key": str(out), "public_key": str(pubout), "sm3_fingerprint": fp},
            f"wrote {out} and {pubout} (SM3 fingerprint {fp})")


def _load_private(path: Path) -> sm2.SM2PrivateKey:
    return sm2.load_private_key(_read(path))


def _load_public(path: Path) -> sm2.SM2PublicKey:
    return sm2.load_public_key(_read(path))


@sm2_app.command("sign")
def sm2_sign(
    key: Annotated[Path, typer.Option("--key", help="Private key PEM.")],
    in_file: InFile,
    out: OutFile,
    ident: IdOpt = SM2_DEFAULT_ID.decode(),
    raw: Annotated[bool, typer.Option("--raw", help="Write r||s instead of DER.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Sign a file with SM2 (SM3 digest, Z from --id)."""

    def run() -> None:
        enc = sm2.SignatureEncoding.RAW if raw else sm2.SignatureEncoding.DER
        sig = _load_private(key).sign(_read(in_file), id=ident, encoding=enc)
        _write(out, sig)
        _report(as_json, {"signature": base64.b64encode(sig).decode(), "encoding": enc.value,
                          "out": str(out)}, f"wrote {enc.value} signature to {out}")

    _guard(run)


@sm2_app.command("verify")
def sm2_verify(
    pub: Annotated[Path, typer.Option("--pub", help="Public key PEM.")],
    in_file: InFile,
    sig: Annotated[Path, typer.Option("--sig", help="Signature file.")],
    ident: IdOpt = SM2_DEFAULT_ID.decode(),
    raw: Annotated[bool, typer.Option("--raw", help="Signature is r||s.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Verify an SM2 signature. Exit 0 valid, 1 invalid, 2 bad input."""

    def run() -> None:
        enc = sm2.SignatureEncoding.RAW if raw else sm2.SignatureEncoding.DER
        try:
            _load_public(pub).verify(_read(sig), _read(in_file), id=ident, encoding=enc)
        except VerificationFailed:
            _report(as_json, {"valid": False}, "Signature Verification Failure")
            raise typer.Exit(EXIT_INVALID) from None
        _report(as_json, {"valid": True}, "Signature Verified Successfully")

    _guard(run)


@sm2_app.command("encrypt")
def sm2_encrypt(
    pub: Annotated[Path, typer.Option("--pub", help="Recipient public key PEM.")],
    in_file: InFile,
    out: OutFile,
    fmt: Annotated[sm2.CiphertextFormat, typer.Option("--format")] = sm2.CiphertextFormat.DER,
    as_json: JsonFlag = False,
) -> None:
    """SM2-encrypt a (small) file; DER C1C3C2 by default, as OpenSSL 3."""

    def run() -> None:
        ct = _load_public(pub).encrypt(_read(in_file), format=fmt)
        _write(out, ct)
        _report(as_json, {"out": str(out), "bytes": len(ct), "format": fmt.value},
                f"wrote {len(ct)} bytes to {out}")

    _guard(run)


@sm2_app.command("decrypt")
def sm2_decrypt(
    key: Annotated[Path, typer.Option("--key", help="Private key PEM.")],
    in_file: InFile,
    out: OutFile,
    fmt: Annotated[sm2.CiphertextFormat, typer.Option("--format")] = sm2.CiphertextFormat.DER,
    as_json: JsonFlag = False,
) -> None:
    """SM2-decrypt (DER, raw c1c3c2, or legacy c1c2c3)."""

    def run() -> None:
        pt = _load_private(key).decrypt(_read(in_file), format=fmt)
        _write(out, pt, 0o600)
        _report(as_json, {"out": str(out), "bytes": len(pt)}, f"wrote {len(pt)} bytes to {out}")

    _guard(run)


# --------------------------------------------------------------------------- SM4


ModeOpt = Annotated[sm4.Mode, typer.Option("--mode", help="Block cipher mode.")]
KeyHex = Annotated[str, typer.Option("--key", help="128-bit key, hex.")]
IvHex = Annotated[
    str | None,
    typer.Option("--iv", help="IV/nonce, hex (16 bytes; GCM 12). Omitted: random on "
                 "encrypt and prepended; read from the input's start on decrypt."),
]
AadHex = Annotated[str, typer.Option("--aad", help="GCM additional data, hex.")]


def _hex(value: str, what: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise MalformedInput(f"{what} is not hex") from None


def _iv_len(mode: sm4.Mode) -> int:
    return GCM_NONCE_BYTES if mode is sm4.Mode.GCM else SM4_BLOCK_BYTES


@sm4_app.command("encrypt")
def sm4_encrypt(mode: ModeOpt, key: KeyHex, in_file: InFile, out: OutFile,
                iv: IvHex = None, aad: AadHex = "", as_json: JsonFlag = False) -> None:
    """Encrypt a file (streamed). GCM output is ciphertext || 16-byte tag."""

    def run() -> None:
        k, a = _hex(key, "key"), _hex(aad, "aad")
        nonce = _hex(iv, "iv") if iv is not None else None
        prefix = b""
        if mode is not sm4.Mode.ECB and nonce is None:
            nonce = secrets.token_bytes(_iv_len(mode))
            prefix = nonce
        try:
            with in_file.open("rb") as src, _atomic_output(out) as dst:
                dst.write(prefix)
                sm4.encrypt_stream(src, dst, mode, k, nonce, a)
        except OSError as exc:
            raise MalformedInput(f"I/O error: {exc.strerror}") from None
        _report(as_json, {"out": str(out), "mode": mode.value,
                          "iv": nonce.hex() if nonce else None, "iv_prepended": bool(prefix)},
                f"wrote {out}")

    _guard(run)


@sm4_app.command("decrypt")
def sm4_decrypt(mode: ModeOpt, key: KeyHex, in_file: InFile, out: OutFile,
                iv: IvHex = None, aad: AadHex = "", as_json: JsonFlag = False) -> None:
    """Decrypt a file (streamed). For GCM nothing is written unless the tag verifies."""

    def run() -> None:
        k, a = _hex(key, "key"), _hex(aad, "aad")
        nonce = _hex(iv, "iv") if iv is not None else None
        try:
            with in_file.open("rb") as src, _atomic_output(out, 0o600) as dst:
                if mode is not sm4.Mode.ECB and nonce is None:
                    nonce = src.read(_iv_len(mode))
                    if len(nonce) != _iv_len(mode):
                        raise MalformedInput("input too short to hold the IV")
                sm4.decrypt_stream(src, dst, mode, k, nonce, a)
        except OSError as exc:
            raise MalformedInput(f"I/O error: {exc.strerror}") from None
        _report(as_json, {"out": str(out), "mode": mode.value}, f"wrote {out}")

    _guard(run)
