"""``ztgw scan pii`` and ``ztgw watermark mark|trace``: data protection from the command line.

Exit codes: 0 the command ran (``trace`` also when it names nobody — read ``attributed``),
2 bad usage or unreadable input (a missing file, not JSON/NDJSON/CSV, no protection key).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from .formats import FileFormatError, iter_records, sniff
from .keys import KEY_FILE, ProtectionKeys
from .scan import scan_records
from .watermark import ALPHA, REGISTRY_FILE, Watermarker, WatermarkRegistry

__all__ = ["scan_app", "watermark_app"]

scan_app = typer.Typer(help="Scanners: personal data in files.", no_args_is_help=True)
watermark_app = typer.Typer(help="Leak-tracing watermarks: mark an export, trace a leak.",
                            no_args_is_help=True)
err = Console(stderr=True)


def _print_json(doc: Any) -> None:
    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")


def _home(ctx: typer.Context) -> Path:
    settings = ctx.find_root().obj
    home = getattr(settings, "home", None)
    return Path(home) if home is not None else Path("./var")


def _existing(path: Path) -> Path:
    if not path.is_file():
        err.print(f"{path}: no such file")
        raise typer.Exit(2)
    return path


@scan_app.command("pii")
def scan_pii(
    file: Annotated[Path, typer.Argument(help="CSV, JSON or NDJSON file (format judged by content)")],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON document")] = False,
) -> None:
    """Which fields hold which kinds of personal data, judged by content."""
    path = _existing(file)
    try:
        fmt = sniff(path)
        report = scan_records(iter_records(path, fmt))
    except FileFormatError as exc:
        err.print(f"{path}: {exc}")
        raise typer.Exit(2) from None
    doc = {"file": str(path), "format": fmt, **report.to_dict()}
    if as_json:
        _print_json(doc)
        return
    table = Table("field", "type", "matches", "rows", title=f"{path} ({fmt}, {report.rows} rows)")
    for f in report.fields:
        table.add_row(f.field, f.type, str(f.matches), str(f.rows))
    Console().print(table)


def _watermarker(ctx: typer.Context, *, create: bool) -> Watermarker:
    home = _home(ctx)
    keys_dir = home / "keys"
    if not create and not (keys_dir / KEY_FILE).exists():
        err.print(f"no protection key at {keys_dir / KEY_FILE}: nothing was ever watermarked here")
        raise typer.Exit(2)
    keys = ProtectionKeys.load_or_create(keys_dir)
    return Watermarker(keys.watermark, WatermarkRegistry(home / REGISTRY_FILE))


@watermark_app.command("trace")
def trace(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="the leaked file: CSV, JSON or NDJSON")],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON document")] = False,
    alpha: Annotated[float, typer.Option(help="largest false-attribution bound that names a recipient")
                     ] = ALPHA,
) -> None:
    """Name the recipient and request a leaked file was served to, with a p-value."""
    path = _existing(file)
    if not 0 < alpha < 1:
        err.print("--alpha must be in (0, 1)")
        raise typer.Exit(2)
    wm = _watermarker(ctx, create=False)
    try:
        result = wm.trace(iter_records(path), alpha=alpha)
    except FileFormatError as exc:
        err.print(f"{path}: {exc}")
        raise typer.Exit(2) from None
    doc = {"file": str(path), **result.to_dict()}
    if as_json:
        _print_json(doc)
        return
    out = Console()
    if not result.attributed:
        out.print(f"no recipient identified ({result.votes} watermark votes, "
                  f"{result.candidates} issued watermarks checked)")
        return
    for c in result.attributed:
        out.print(f"recipient {c.issue.recipient}  request {c.issue.request_id}  "
                  f"dataset {c.issue.dataset or '-'}  matches {c.matches}/{c.votes}  "
                  f"false-attribution bound {c.p_value:.3g}")


@watermark_app.command("mark")
def mark(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV, JSON or NDJSON export to mark")],
    recipient: Annotated[str, typer.Option(help="who receives the export (client id)")],
    request_id: Annotated[str, typer.Option(help="the request or ticket the export answers")],
    out: Annotated[Path, typer.Option(help="where to write the marked copy")],
    dataset: Annotated[str, typer.Option(help="dataset name, for the registry")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON document")] = False,
) -> None:
    """Watermark an offline export the way the gateway marks responses."""
    path = _existing(file)
    wm = _watermarker(ctx, create=True)
    try:
        fmt = sniff(path)
        plan = wm.plan(recipient, request_id, dataset)
        rows = 0
        if fmt == "csv":
            with path.open(encoding="utf-8-sig", newline="") as src, \
                    out.open("w", encoding="utf-8", newline="") as dst:
                reader, writer = csv.reader(src), csv.writer(dst, lineterminator="\r\n")
                header = next(reader, None)
                if header is not None:
                    writer.writerow(header)
                for row in reader:
                    plan.csv_row(row)
                    writer.writerow(row)
                    rows += 1
        elif fmt == "ndjson":
            with out.open("wb") as dst:
                for rec in iter_records(path, fmt):
                    plan.record(rec)
                    dst.write(orjson.dumps(rec) + b"\n")
                    rows += 1
        else:
            body, rows = plan.json_body(path.read_bytes())
            out.write_bytes(body)
    except (FileFormatError, orjson.JSONDecodeError, UnicodeDecodeError, csv.Error) as exc:
        err.print(f"{path}: {exc}")
        raise typer.Exit(2) from None
    doc = {"out": str(out), "format": fmt, "records": rows, "bits": plan.bits,
           "watermark_id": plan.watermark_id}
    if as_json:
        _print_json(doc)
    else:
        Console().print(f"marked {rows} records ({plan.bits} bits) → {out}; watermark {plan.watermark_id}")
