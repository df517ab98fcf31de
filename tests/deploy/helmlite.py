"""Renders the ztgw Helm chart for tests when the ``helm`` binary is not installed (it is not
packaged for Debian or PyPI).  Implements exactly the Go-template subset the chart uses —
``define``/``include``, ``if``/``else``/``end`` (with ``not``), ``range`` over a list,
``index``, ``.Values``/``.Release``/``.Chart`` look-ups and the pipes ``quote``, ``toYaml``,
``nindent``, ``indent`` — and fails loudly on anything else, so the chart cannot drift into
syntax this renderer would silently get wrong.  With ``helm`` on PATH the tests use it too.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

ACTION = re.compile(r"(\s*)\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.DOTALL)


class TemplateError(ValueError):
    pass


def _tokens(text: str) -> list[tuple[str, str]]:
    """[("text", s) | ("action", expr)] with Go's {{- / -}} whitespace trimming applied."""
    out: list[tuple[str, str]] = []
    pos = 0
    trim_next = False
    for m in ACTION.finditer(text):
        lead_ws, left, expr, right = m.group(1), m.group(2), m.group(3), m.group(4)
        chunk = text[pos:m.start()] + ("" if left else lead_ws)
        if trim_next:
            chunk = chunk.lstrip()
        out.append(("text", chunk))
        out.append(("action", expr))
        trim_next = bool(right)
        pos = m.end()
    tail = text[pos:]
    out.append(("text", tail.lstrip() if trim_next else tail))
    return out


def _lookup(path: str, ctx: dict[str, Any]) -> Any:
    if path == ".":
        return ctx["."]
    cur: Any = ctx["."] if path.startswith(".") and not path.startswith((".Values", ".Release",
                                                                         ".Chart")) else ctx
    for part in path.lstrip(".").split("."):
        if isinstance(cur, dict):
            cur = cur.get(part)
        else:
            raise TemplateError(f"cannot look up {path}")
    return cur


def _to_yaml(v: Any) -> str:
    return yaml.safe_dump(v, default_flow_style=False, sort_keys=False, allow_unicode=True).rstrip("\n")


class Chart:
    def __init__(self, root: Path, values: dict[str, Any] | None = None,
                 release: str = "ztgw") -> None:
        self.root = root
        meta = yaml.safe_load((root / "Chart.yaml").read_text())
        vals = yaml.safe_load((root / "values.yaml").read_text())
        vals.update(values or {})
        self.top = {"Values": vals, "Release": {"Name": release, "Service": "Helm",
                                                "Namespace": "default"},
                    "Chart": {"Name": meta["name"], "Version": meta["version"],
                              "AppVersion": meta["appVersion"]}}
        self.defines: dict[str, list[tuple[str, str]]] = {}
        for tpl in sorted((root / "templates").glob("*.tpl")):
            self._collect_defines(_tokens(tpl.read_text()))

    def _collect_defines(self, toks: list[tuple[str, str]]) -> None:
        i = 0
        while i < len(toks):
            kind, val = toks[i]
            if kind == "action" and val.startswith("define "):
                name = shlex.split(val)[1]
                depth, j = 1, i + 1
                while depth:
                    k, v = toks[j]
                    if k == "action" and v.split(" ")[0] in ("if", "range", "define", "with"):
                        depth += 1
                    elif k == "action" and v == "end":
                        depth -= 1
                    j += 1
                self.defines[name] = toks[i + 1:j - 1]
                i = j
            else:
                i += 1

    # --- evaluation ----------------------------------------------------------------------
    def _value(self, term: str, ctx: dict[str, Any]) -> Any:
        words = shlex.split(term, posix=False)
        if words[0] == "include":
            return self._render(self.defines[words[1].strip('"')], ctx).strip("\n")
        if words[0] == "toYaml":
            return _to_yaml(self._value(words[1], ctx))
        if words[0] == "not":
            return not self._value(" ".join(words[1:]), ctx)
        if words[0] == "index":
            return self._value(words[1], ctx)[int(words[2])]
        if len(words) != 1:
            raise TemplateError(f"unsupported expression {term!r}")
        w = words[0]
        if w.startswith('"'):
            return w.strip('"')
        if w.startswith("."):
            return _lookup(w, ctx)
        if re.fullmatch(r"-?\d+", w):
            return int(w)
        raise TemplateError(f"unsupported term {w!r}")

    def _pipe(self, expr: str, ctx: dict[str, Any]) -> Any:
        stages = [s.strip() for s in expr.split("|")]
        val = self._value(stages[0], ctx)
        for st in stages[1:]:
            fn, *args = st.split()
            if fn == "quote":
                val = '"' + str(val).replace('"', '\\"') + '"'
            elif fn == "nindent":
                pad = " " * int(args[0])
                val = "\n" + "\n".join(pad + ln if ln else ln for ln in str(val).split("\n"))
            elif fn == "indent":
                pad = " " * int(args[0])
                val = "\n".join(pad + ln for ln in str(val).split("\n"))
            elif fn == "toYaml":
                val = _to_yaml(val)
            else:
                raise TemplateError(f"unsupported function {fn!r}")
        return val

    def _render(self, toks: list[tuple[str, str]], ctx: dict[str, Any]) -> str:
        out: list[str] = []
        i = 0
        while i < len(toks):
            kind, val = toks[i]
            if kind == "text":
                out.append(val)
                i += 1
                continue
            head = val.split(" ")[0]
            if head in ("if", "range"):
                depth, j, else_at = 1, i + 1, None
                while depth:
                    k, v = toks[j]
                    if k == "action" and v.split(" ")[0] in ("if", "range", "with", "define"):
                        depth += 1
                    elif k == "action" and v == "end":
                        depth -= 1
                    elif k == "action" and v == "else" and depth == 1:
                        else_at = j
                    j += 1
                body = toks[i + 1:(else_at if else_at is not None else j - 1)]
                other = toks[else_at + 1:j - 1] if else_at is not None else []
                arg = val[len(head):].strip()
                if head == "if":
                    out.append(self._render(body if self._pipe(arg, ctx) else other, ctx))
                else:
                    for item in self._pipe(arg, ctx) or []:
                        out.append(self._render(body, {**ctx, ".": item}))
                i = j
            elif head in ("define", "with", "else", "end", "template", "tpl", "required"):
                raise TemplateError(f"unsupported or misplaced action {val!r}")
            elif val.startswith("/*"):
                i += 1
            else:
                res = self._pipe(val, ctx)
                out.append("" if res is None else str(res))
                i += 1
        return "".join(out)

    def render(self) -> dict[str, str]:
        """template file name -> rendered text (helpers and NOTES excluded)."""
        ctx = {**self.top, ".": self.top}
        return {p.name: self._render(_tokens(p.read_text()), ctx)
                for p in sorted((self.root / "templates").glob("*.yaml"))}

    def manifests(self) -> list[dict[str, Any]]:
        docs = []
        for name, text in self.render().items():
            for doc in yaml.safe_load_all(text):
                if doc:
                    doc.setdefault("_source", name)
                    docs.append(doc)
        return docs
