"""The PromQL of our Grafana dashboards and Prometheus console templates, found without running
them: checked statically by tests/unit/ops/test_dashboards_static.py, run against a live
Prometheus by tests/e2e/test_dashboards.py.

Dashboards (monitoring/dashboards/*.json): the `expr` of every target of every panel. Consoles
(monitoring/prometheus/consoles/*.html): the raw string literals (between backquotes) inside
the Go template actions, read the way Go's lexer does; check_console_conventions() names what
would let a query hide from this extractor.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS_DIR = ROOT / "monitoring" / "dashboards"
CONSOLES_DIR = ROOT / "monitoring" / "prometheus" / "consoles"
DASHBOARDS = sorted(DASHBOARDS_DIR.glob("*.json"))
CONSOLES = sorted(CONSOLES_DIR.glob("*.html"))

# What Grafana puts in place of its variables, for running a panel's query elsewhere. `$env` is
# filled in by the caller: the environment's label value, or `.*` (the variable's All value)
# when the series carry no env label (one environment's own Prometheus).
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
}


@dataclass(frozen=True)
class Query:
    """One PromQL expression and where it comes from (for failure messages)."""

    where: str
    expr: str


# ------------------------------------------------------------------------------- dashboards


def load_dashboard(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name}: not a JSON object"
    return data


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those inside rows (a collapsed row keeps its panels inside)."""
    found: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def dashboard_queries(path: Path) -> list[Query]:
    """The `expr` of every target of every panel, with Grafana's variables still in."""
    queries = []
    for panel in all_panels(load_dashboard(path)):
        for target in panel.get("targets", []):
            title, ref = panel.get("title"), target.get("refId")
            where = f"{path.name} panel {panel.get('id')} {title!r} {ref}"
            queries.append(Query(where, str(target.get("expr", ""))))
    return queries


def grafana_expr(expr: str, env: str) -> str:
    """The expression as Grafana sends it, for an `env` variable set to `env`."""
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return expr.replace("${env}", env).replace("$env", env)


# --------------------------------------------------------------------------------- consoles


class TemplateSyntaxError(ValueError):
    """A console template the extractor cannot read as Go's lexer would."""


@dataclass(frozen=True)
class Token:
    kind: str  # raw (`...`), string ("..."), char ('x'), word, punct
    text: str  # a literal's content without its quotes; a word or punctuation as written
    line: int


@dataclass(frozen=True)
class Action:
    tokens: tuple[Token, ...]
    line: int


_WORD = re.compile(r"[^\s`\"'()|,}]+")


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _lex_action(text: str, pos: int, name: str) -> tuple[list[Token], int]:
    """Tokens of the action whose content starts at `pos`; returns them and the offset after
    its closing delimiter."""
    tokens: list[Token] = []
    while True:
        if pos >= len(text):
            raise TemplateSyntaxError(f"{name}: unclosed action (missing }}}})")
        char = text[pos]
        if text.startswith("-}}", pos) and (pos == 0 or text[pos - 1].isspace()):
            return tokens, pos + 3
        if text.startswith("}}", pos):
            return tokens, pos + 2
        if char.isspace():
            pos += 1
        elif char == "`":
            end = text.find("`", pos + 1)
            if end < 0:
                raise TemplateSyntaxError(f"{name}:{_line(text, pos)}: unclosed raw string")
            tokens.append(Token("raw", text[pos + 1 : end], _line(text, pos)))
            pos = end + 1
        elif char in "\"'":
            end = pos + 1
            while end < len(text) and text[end] != char:
                if text[end] == "\n":
                    break
                end += 2 if text[end] == "\\" else 1
            if end >= len(text) or text[end] != char:
                raise TemplateSyntaxError(f"{name}:{_line(text, pos)}: unclosed {char} literal")
            kind = "string" if char == '"' else "char"
            tokens.append(Token(kind, text[pos + 1 : end], _line(text, pos)))
            pos = end + 1
        elif char in "()|,":
            tokens.append(Token("punct", char, _line(text, pos)))
            pos += 1
        else:
            match = _WORD.match(text, pos)
            if not match:
                raise TemplateSyntaxError(f"{name}:{_line(text, pos)}: unexpected {char!r}")
            tokens.append(Token("word", match.group(), _line(text, pos)))
            pos = match.end()


def template_actions(text: str, name: str = "template") -> tuple[list[Action], str]:
    """The actions of a Go template ({{ ... }}, comments left out) and the text outside them."""
    actions: list[Action] = []
    outside: list[str] = []
    pos = 0
    while True:
        start = text.find("{{", pos)
        if start < 0:
            outside.append(text[pos:])
            return actions, "".join(outside)
        outside.append(text[pos:start])
        inner = start + 2
        if text.startswith("- ", inner):
            inner += 2
        stripped = inner
        while stripped < len(text) and text[stripped].isspace():
            stripped += 1
        if text.startswith("/*", stripped):
            end = text.find("*/", stripped + 2)
            close = re.compile(r"\*/\s*-?\}\}").match(text, end) if end >= 0 else None
            if not close:
                raise TemplateSyntaxError(f"{name}:{_line(text, start)}: unclosed comment")
            pos = close.end()
            continue
        tokens, pos = _lex_action(text, inner, name)
        actions.append(Action(tuple(tokens), _line(text, start)))


def check_console_conventions(text: str, name: str) -> list[str]:
    """Ways a console could hold a query the extractor would miss; empty when there are none."""
    problems = []
    actions, outside = template_actions(text, name)
    if "`" in outside:
        problems.append(f"{name}: a backquote outside a template action (queries go in actions)")
    for action in actions:
        tokens = action.tokens
        for i, token in enumerate(tokens):
            where = f"{name}:{token.line}"
            if token.kind == "word" and token.text == "printf":
                problems.append(f"{where}: printf builds text at render time; write the query out")
            if token.kind == "word" and token.text == "query":
                after = tokens[i + 1] if i + 1 < len(tokens) else None
                if after is None or after.kind != "raw":
                    problems.append(f"{where}: `query` must take a raw string literal directly")
            if token.kind == "string" and token.text == "prom_query_drilldown":
                rest = [t.text if t.kind != "raw" else "`" for t in tokens[i + 1 : i + 4]]
                if rest != ["(", "args", "`"]:
                    problems.append(
                        f"{where}: prom_query_drilldown takes (args `expr` ...) with the "
                        "expression as a raw string literal"
                    )
            if token.kind == "raw" and not token.text.strip():
                problems.append(f"{where}: empty raw string")
    return problems


def console_queries(path: Path) -> list[Query]:
    """Every PromQL expression of a console template: its raw string literals."""
    text = path.read_text(encoding="utf-8")
    actions, _ = template_actions(text, path.name)
    return [
        Query(f"{path.name}:{token.line}", token.text)
        for action in actions
        for token in action.tokens
        if token.kind == "raw"
    ]


def every_query() -> list[Query]:
    """All expressions of every dashboard and console (Grafana variables still in)."""
    found: list[Query] = []
    for path in DASHBOARDS:
        found += dashboard_queries(path)
    for path in CONSOLES:
        found += console_queries(path)
    return found
