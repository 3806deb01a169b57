"""Grafana dashboards and Prometheus console templates, checked without Docker.

Dashboards (monitoring/dashboards/*.json): each parses, has a uid and a title of its own, unique
panel ids, the `datasource` and `env` variables, and every panel queries through the datasource
variable with a PromQL `expr` whose every selector is scoped to `$env`. The provisioning files
parse and point at Prometheus.

Consoles (monitoring/prometheus/consoles/*.html): their PromQL expressions are found by reading
the Go template actions the way Go's lexer does. The convention that makes this reliable: every
expression is a raw string literal (between backquotes) inside an action, backquotes are used
for nothing else, `query` and prom_query_drilldown take such a literal directly, and no action
builds an expression while rendering (printf). Those rules are checked here too, so a query
cannot hide from the extractor, and tests/e2e/test_dashboards.py runs exactly what is found.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
DASHBOARDS_DIR = ROOT / "monitoring" / "dashboards"
PROVISIONING_DIR = DASHBOARDS_DIR / "provisioning"
CONSOLES_DIR = ROOT / "monitoring" / "prometheus" / "consoles"
RULES_DIR = ROOT / "monitoring" / "prometheus" / "rules"
DASHBOARDS = sorted(DASHBOARDS_DIR.glob("*.json"))
CONSOLES = sorted(CONSOLES_DIR.glob("*.html"))
EXPECTED_DASHBOARDS = {
    "slipway-overview",
    "slipway-postgres",
    "slipway-redis",
    "slipway-host",
    "slipway-slo",
}
EXPECTED_CONSOLES = {"index.html", "slipway-overview.html", "slipway-slo.html"}
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
ENV_MATCHER = 'env=~"$env"'

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


def recorded_series() -> set[str]:
    names: set[str] = set()
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            names.update(rule["record"] for rule in group["rules"] if "record" in rule)
    return names


# ------------------------------------------------------------------------ tests: extractor


def test_the_extractor_reads_raw_strings_in_actions_and_skips_comments() -> None:
    text = (
        '{{/* `not a query` {{ }} */}}<p>{{ template "prom_query_drilldown" '
        '(args `sum(up{job="a"})` "/s" "humanize") }}</p>\n'
        "<script>expr: [{{ `rate(x[5m])` }}, {{- `y` -}}]</script>\n"
        "{{ range query `sort(up)` }}{{ .Labels.job }}{{ end }}"
    )
    actions, outside = template_actions(text)
    raws = [t.text for a in actions for t in a.tokens if t.kind == "raw"]
    assert raws == ['sum(up{job="a"})', "rate(x[5m])", "y", "sort(up)"]
    assert "not a query" not in outside
    assert check_console_conventions(text, "sample") == []


def test_the_extractor_reads_a_raw_string_that_contains_the_closing_delimiter() -> None:
    actions, _ = template_actions('{{ query `label_replace(x{a="}}"}, "b", "c", "", "")` }}')
    assert [t.text for t in actions[0].tokens] == [
        "query",
        'label_replace(x{a="}}"}, "b", "c", "", "")',
    ]


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ('{{ with printf "up{job=%q}" .Params.job | query }}{{ end }}', "printf"),
        ('{{ range query "sort(up)" }}{{ end }}', "`query` must take a raw string"),
        ('{{ template "prom_query_drilldown" (args "up") }}', "prom_query_drilldown takes"),
        ("<script>var e = `up`;</script>", "backquote outside"),
    ],
    ids=[
        "a query built with printf is refused",
        "a query in a double-quoted string is refused",
        "a drilldown without a raw string is refused",
        "a backquote outside an action is refused",
    ],
)
def test_a_query_the_extractor_could_miss_is_refused(template: str, problem: str) -> None:
    problems = check_console_conventions(template, "sample")
    assert any(problem in p for p in problems), problems


def test_an_unclosed_action_or_raw_string_is_an_error() -> None:
    with pytest.raises(TemplateSyntaxError, match="unclosed raw string"):
        template_actions("{{ query `up }}")
    with pytest.raises(TemplateSyntaxError, match="unclosed action"):
        template_actions("{{ .Labels.job ")


def test_grafana_variables_are_replaced_as_grafana_sends_them() -> None:
    expr = 'sum(rate(x{env=~"$env"}[$__rate_interval])) + increase(y{env=~"${env}"}[$__range])'
    assert grafana_expr(expr, ".*") == ('sum(rate(x{env=~".*"}[1m])) + increase(y{env=~".*"}[1h])')


# ------------------------------------------------------------------------ tests: dashboards


def test_the_five_dashboards_ship() -> None:
    assert {p.stem for p in DASHBOARDS} >= EXPECTED_DASHBOARDS


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_a_dashboard_has_identity_variables_and_unique_panel_ids(path: Path) -> None:
    dashboard = load_dashboard(path)
    assert re.fullmatch(r"[a-z0-9-]{1,40}", dashboard.get("uid", "")), "uid"
    assert dashboard["uid"] == path.stem
    assert dashboard.get("title", "").strip()
    assert dashboard.get("schemaVersion", 0) >= 36  # Grafana 9.0+: object datasource refs
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    env = variables["env"]
    assert env["type"] == "query"
    assert env["datasource"] == DATASOURCE_REF
    assert env["query"] == env["definition"] == "label_values(up, env)"
    assert env["includeAll"] is True and env["allValue"] == ".*"
    ids = [panel["id"] for panel in all_panels(dashboard)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {ids}"
    for panel in all_panels(dashboard):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, f"panel {panel['id']} off the grid"


def test_dashboard_uids_and_titles_are_unique() -> None:
    dashboards = [load_dashboard(p) for p in DASHBOARDS]
    assert len({d["uid"] for d in dashboards}) == len(dashboards)
    assert len({d["title"] for d in dashboards}) == len(dashboards)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_queries_prometheus_through_the_datasource_variable(path: Path) -> None:
    problems = []
    for panel in all_panels(load_dashboard(path)):
        where = f"panel {panel['id']} {panel.get('title')!r}"
        if panel["type"] == "row":
            continue
        targets = panel.get("targets", [])
        if not targets:
            problems.append(f"{where}: no targets")
        if panel.get("datasource") != DATASOURCE_REF:
            problems.append(f"{where}: datasource is {panel.get('datasource')!r}")
        ref_ids = [t.get("refId") for t in targets]
        if len(ref_ids) != len(set(ref_ids)):
            problems.append(f"{where}: duplicate refIds {ref_ids}")
        for target in targets:
            if not str(target.get("expr", "")).strip():
                problems.append(f"{where} {target.get('refId')}: no expr")
            if target.get("datasource") != DATASOURCE_REF:
                problems.append(f"{where} {target.get('refId')}: target datasource")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_selector_of_a_dashboard_is_scoped_to_the_env_variable(path: Path) -> None:
    unscoped = [
        f"{query.where}: {{{body}}}"
        for query in dashboard_queries(path)
        for body in re.findall(r"\{([^{}]*)\}", query.expr)
        if ENV_MATCHER not in body
    ]
    assert not unscoped, "\n".join(unscoped)


def test_the_provisioning_files_load_the_dashboards_from_prometheus() -> None:
    datasources = yaml.safe_load((PROVISIONING_DIR / "datasources.yaml").read_text())
    assert datasources["apiVersion"] == 1
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert source["access"] == "proxy"
    providers = yaml.safe_load((PROVISIONING_DIR / "dashboards.yaml").read_text())
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")


# -------------------------------------------------------------------------- tests: consoles


def test_the_consoles_ship_and_the_index_links_them() -> None:
    assert {p.name for p in CONSOLES} >= EXPECTED_CONSOLES
    index = (CONSOLES_DIR / "index.html").read_text(encoding="utf-8")
    for name in EXPECTED_CONSOLES - {"index.html"}:
        assert f'href="{name}"' in index


@pytest.mark.parametrize("path", CONSOLES, ids=lambda p: p.name)
def test_a_console_keeps_every_query_where_the_extractor_finds_it(path: Path) -> None:
    problems = check_console_conventions(path.read_text(encoding="utf-8"), path.name)
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------- tests: together


@pytest.mark.parametrize("path", DASHBOARDS + CONSOLES, ids=lambda p: p.name)
def test_every_file_has_queries(path: Path) -> None:
    queries = dashboard_queries(path) if path.suffix == ".json" else console_queries(path)
    assert queries, f"{path.name}: no PromQL expression found"


def test_consoles_use_no_grafana_variable() -> None:
    leftover = [q for p in CONSOLES for q in console_queries(p) if "$" in q.expr]
    assert not leftover, leftover


def test_every_recording_rule_used_is_defined() -> None:
    defined = recorded_series()
    used = {name for q in every_query() for name in re.findall(r"slipway:[\w:]+", q.expr)}
    assert used, "the SLO panels read the slipway:* recording rules"
    assert used <= defined, f"not recorded by monitoring/prometheus/rules: {used - defined}"
