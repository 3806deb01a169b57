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
cannot hide from the extractor (support/dashboard_queries.py), and tests/e2e/test_dashboards.py
runs exactly what it finds.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from support.dashboard_queries import (
    CONSOLES,
    CONSOLES_DIR,
    DASHBOARDS,
    DASHBOARDS_DIR,
    ROOT,
    TemplateSyntaxError,
    all_panels,
    check_console_conventions,
    console_queries,
    dashboard_queries,
    every_query,
    grafana_expr,
    load_dashboard,
    template_actions,
)

pytestmark = pytest.mark.unit

PROVISIONING_DIR = DASHBOARDS_DIR / "provisioning"
RULES_DIR = ROOT / "monitoring" / "prometheus" / "rules"
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
