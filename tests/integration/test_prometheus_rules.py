"""Prometheus' rules and configuration, checked by the tools of the image that runs them.

In the image (slipway/prometheus, built through compose): `promtool check rules` on every file of
monitoring/prometheus/rules/ and `promtool test rules` on every unit test of
monitoring/prometheus/tests/ (both bind-mounted read-only, so the checkout's files are what is
checked); the entrypoint's `check-config` and `render` with sample settings, and its refusal of
bad settings, naming the variable; Prometheus itself started as compose starts it (read-only
root, no capabilities, a fresh volume at /prometheus) serving the probe targets, the rules and
the consoles.

Without Docker: every alert carries the contract's labels and annotations, links a runbook
section that exists in docs/runbook.md and is shown firing (and, but for Watchdog, silent) by a
unit test; every rule file has its test file.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e.built import built_image
from support.docker import docker, logs, output, remove
from support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "monitoring" / "prometheus"
RULES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
UNIT_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.test.yml"))
RUNBOOK = ROOT / "docs" / "runbook.md"
RUNBOOK_URL = "https://github.com/slipway/slipway/blob/main/docs/runbook.md#"
SEVERITIES = {"critical", "warning", "info", "none"}
COMPONENTS = {
    "api",
    "worker",
    "ingest",
    "postgres",
    "redis",
    "nginx",
    "host",
    "tls",
    "probe",
    "monitoring",
    "backup",
}
# Always firing: there is no "should be silent" case to show.
NEVER_SILENT = {"Watchdog"}
SAMPLE_ENV = {
    "SLIPWAY_ENV": "test",
    "PROBE_DOMAINS": "example.org www.example-shop.org",
    "PROBE_ADDRESS": "nginx:8443",
}
EXPECTED_JOBS = {
    "api",
    "worker",
    "node",
    "postgres",
    "redis",
    "nginx",
    "blackbox",
    "probe",
    "alertmanager",
    "prometheus",
}
# As compose runs the container (compose/compose.yaml, x-hardening and the service's tmpfs).
HARDENING = [
    "--read-only",
    "--tmpfs",
    "/tmp:size=64m",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges:true",
]


# --- without Docker -------------------------------------------------------------------------


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _alert_rules() -> list[tuple[str, dict[str, Any]]]:
    """(rule file name, alerting rule) for every alert of every rule file."""
    return [
        (path.name, rule)
        for path in RULES
        for group in _load(path)["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading: lower case, punctuation dropped, spaces as -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def runbook_anchors(markdown: str) -> set[str]:
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        match = re.match(r"#{1,6} (.+)", line)
        if fenced or not match:
            continue
        anchor = github_anchor(match.group(1))
        # A repeated heading gets -1, -2, ... on GitHub.
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        anchors.add(anchor if count == 0 else f"{anchor}-{count}")
    return anchors


def _alert_cases() -> list[tuple[str, list[Any]]]:
    """(alertname, exp_alerts) of every alert_rule_test case of every unit test file."""
    return [
        (case["alertname"], case.get("exp_alerts") or [])
        for path in UNIT_TESTS
        for group in _load(path).get("tests") or []
        for case in group.get("alert_rule_test") or []
    ]


@pytest.mark.unit
def test_the_rule_and_unit_test_directories_are_not_empty() -> None:
    names = {path.name for path in RULES}
    assert {"targets.yml", "slo.yml", "probes.yml", "nginx.yml", "ingest.yml", "meta.yml"} <= names
    assert UNIT_TESTS


@pytest.mark.unit
def test_every_rule_file_has_a_unit_test_file_that_loads_it() -> None:
    for path in RULES:
        test_file = PROMETHEUS_DIR / "tests" / f"{path.stem}.test.yml"
        assert test_file.is_file(), f"{path.name} has no unit test file tests/{test_file.name}"
        assert f"../rules/{path.name}" in _load(test_file)["rule_files"], test_file.name


@pytest.mark.unit
def test_every_alert_has_the_contract_labels_and_annotations() -> None:
    problems = []
    for file, rule in _alert_rules():
        name = rule["alert"]
        labels = rule.get("labels") or {}
        annotations = rule.get("annotations") or {}
        if labels.get("severity") not in SEVERITIES:
            problems.append(f"{file}: {name}: severity {labels.get('severity')!r}")
        component = labels.get("component", "")
        # A template takes the component from the series (TargetDown, from the job).
        if component not in COMPONENTS and "{{" not in component:
            problems.append(f"{file}: {name}: component {component!r}")
        for key in ("summary", "description", "runbook_url"):
            if not str(annotations.get(key, "")).strip():
                problems.append(f"{file}: {name}: no {key} annotation")
        if not str(annotations.get("runbook_url", "")).startswith(RUNBOOK_URL):
            problems.append(f"{file}: {name}: runbook_url not under {RUNBOOK_URL}")
    assert not problems, "\n".join(problems)


@pytest.mark.unit
def test_critical_down_alerts_wait_one_minute_at_most() -> None:
    """Scrape 10 s + evaluation 10 s + for + group_wait 10 s stays under 2 minutes."""
    seconds = {"s": 1, "m": 60, "h": 3600}
    for file, rule in _alert_rules():
        if rule["alert"].endswith("Down") and rule["labels"]["severity"] == "critical":
            wait = rule.get("for", "0s")
            match = re.fullmatch(r"(\d+)([smh])", wait)
            assert match, f"{file}: {rule['alert']}: unexpected for: {wait}"
            number, unit = match.groups()
            assert int(number) * seconds[unit] <= 60, f"{file}: {rule['alert']} for: {wait}"


@pytest.mark.unit
def test_every_runbook_url_points_at_a_heading_of_the_runbook() -> None:
    anchors = runbook_anchors(RUNBOOK.read_text())
    missing = sorted(
        {
            f"{rule['annotations']['runbook_url'].removeprefix(RUNBOOK_URL)} ({rule['alert']})"
            for _, rule in _alert_rules()
            if rule["annotations"]["runbook_url"].removeprefix(RUNBOOK_URL) not in anchors
        }
    )
    assert not missing, "docs/runbook.md has no heading for: " + ", ".join(missing)


@pytest.mark.unit
def test_every_alert_is_shown_firing_and_silent_by_a_unit_test() -> None:
    alerts = {rule["alert"] for _, rule in _alert_rules()}
    cases = _alert_cases()
    firing = {name for name, expected in cases if expected}
    silent = {name for name, expected in cases if not expected}
    assert alerts - firing == set(), "never shown firing"
    assert alerts - NEVER_SILENT - silent == set(), "never shown silent"


@pytest.mark.unit
def test_github_anchor_matches_the_links_the_runbook_already_uses() -> None:
    assert github_anchor("Schema changes: expand/contract") == "schema-changes-expandcontract"
    assert github_anchor("`invoke up` stops at a step") == "invoke-up-stops-at-a-step"
    assert github_anchor("APIDown") == "apidown"
    assert runbook_anchors("## A\n```\n## B\n```\n## A\n") == {"a", "a-1"}


# --- in the image ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image() -> str:
    return built_image("prometheus", "SLIPWAY_PROMETHEUS_TAG")


def _env_args(env: dict[str, str]) -> list[str]:
    return [arg for name, value in env.items() for arg in ("-e", f"{name}={value}")]


def promtool(image: str, *args: str) -> subprocess.CompletedProcess[str]:
    """promtool in the image, in /src/tests with the checkout's monitoring/prometheus at /src."""
    return docker(
        "run",
        "--rm",
        *HARDENING,
        "-v",
        f"{PROMETHEUS_DIR}:/src:ro",
        "-w",
        "/src/tests",
        "--entrypoint",
        "promtool",
        image,
        *args,
        check=False,
    )


def entrypoint(image: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return docker("run", "--rm", *HARDENING, *_env_args(env), image, *args, check=False)


@pytest.mark.integration
def test_promtool_checks_every_rule_file(image: str) -> None:
    result = promtool(image, "check", "rules", *(f"../rules/{path.name}" for path in RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULES), result.stdout


@pytest.mark.integration
def test_promtool_runs_every_rule_unit_test(image: str) -> None:
    result = promtool(image, "test", "rules", *(path.name for path in UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(UNIT_TESTS), result.stdout


@pytest.mark.integration
def test_check_config_renders_and_checks_the_configuration_and_the_baked_rules(
    image: str,
) -> None:
    result = entrypoint(image, SAMPLE_ENV, "check-config")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is valid prometheus config file syntax" in result.stdout
    assert f"SUCCESS: {len(RULES)} rule files found" in result.stdout


@pytest.mark.integration
def test_the_rendered_configuration_scrapes_every_job_and_probes_each_domain(image: str) -> None:
    result = entrypoint(image, SAMPLE_ENV, "render")
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert config["global"]["scrape_interval"] == "10s"
    assert config["global"]["evaluation_interval"] == "10s"
    assert config["global"]["external_labels"] == {"env": "test"}
    assert config["rule_files"] == ["/etc/slipway/rules/*.yml"]
    alertmanagers = config["alerting"]["alertmanagers"]
    assert alertmanagers == [{"static_configs": [{"targets": ["alertmanager:9093"]}]}]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == EXPECTED_JOBS
    assert jobs["api"]["dns_sd_configs"] == [
        {"names": ["api"], "type": "A", "port": 8000, "refresh_interval": "10s"}
    ]
    assert jobs["worker"]["dns_sd_configs"][0]["names"] == ["worker"]
    assert jobs["worker"]["dns_sd_configs"][0]["port"] == 9100
    assert jobs["postgres"]["static_configs"] == [{"targets": ["postgres-exporter:9187"]}]
    probe = jobs["probe"]
    assert probe["metrics_path"] == "/probe"
    assert probe["params"] == {"target": ["https://nginx:8443/health"]}
    assert probe["static_configs"] == [
        {
            "targets": ["blackbox-exporter:9115"],
            "labels": {
                "__param_module": "https_example_org",
                "domain": "example.org",
                "instance": "https://example.org/health",
            },
        },
        {
            "targets": ["blackbox-exporter:9115"],
            "labels": {
                "__param_module": "https_www_example_shop_org",
                "domain": "www.example-shop.org",
                "instance": "https://www.example-shop.org/health",
            },
        },
    ]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PROBE_DOMAINS", ""),
        ("PROBE_DOMAINS", "https://example.org/"),
        ("PROBE_DOMAINS", "example.org example.org"),
        ("PROMETHEUS_SCRAPE_INTERVAL", "ten"),
        ("PROMETHEUS_EVALUATION_INTERVAL", "0s"),
        ("PROMETHEUS_RETENTION", "30 days"),
        ("PROMETHEUS_RETENTION_SIZE", "10G"),
        ("PROBE_ADDRESS", "nginx"),
        ("SLIPWAY_ENV", ""),
    ],
    ids=lambda value: value or "empty",
)
@pytest.mark.parametrize("command", ["check-config", "prometheus"])
def test_a_bad_setting_is_refused_naming_the_variable(
    image: str, command: str, variable: str, value: str
) -> None:
    result = entrypoint(image, {**SAMPLE_ENV, variable: value}, command)
    assert result.returncode == 64, result.stdout + result.stderr
    assert f"{variable}='{value}' is not valid: " in result.stderr


@pytest.fixture
def running(image: str) -> Iterator[str]:
    """Prometheus started as compose starts it, on a fresh volume; removed afterwards."""
    name = f"slipway-prometheus-test-{secrets.token_hex(3)}"
    volume = f"{name}-data"
    try:
        docker(
            "run", "-d", "--name", name, *HARDENING, "-v", f"{volume}:/prometheus",
            *_env_args(SAMPLE_ENV), image,
        )  # fmt: skip
        yield name
    finally:
        remove(name)
        docker("volume", "rm", "-f", volume, check=False)


def _get(container: str, path: str) -> str:
    return docker("exec", container, "curl", "-fsS", f"http://127.0.0.1:9090{path}").stdout


def _wait_for(container: str, condition: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    return wait_for(
        condition, what=what, timeout=timeout, interval=1, details=lambda: logs(container, 30)
    )


@pytest.mark.integration
def test_prometheus_runs_read_only_as_its_user_and_serves_targets_rules_and_consoles(
    running: str, image: str
) -> None:
    def ready() -> bool:
        probe = docker(
            "exec", running, "curl", "-fsS", "http://127.0.0.1:9090/-/ready", check=False
        )
        return probe.returncode == 0

    _wait_for(running, ready, "Prometheus ready")

    # Discovery hands the targets over a few seconds after start.
    def active_targets() -> list[dict[str, Any]]:
        return json.loads(_get(running, "/api/v1/targets"))["data"]["activeTargets"]

    targets = _wait_for(running, active_targets, "scrape targets discovered", timeout=30)
    probes = {t["labels"]["domain"]: t for t in targets if t["labels"]["job"] == "probe"}
    assert set(probes) == {"example.org", "www.example-shop.org"}
    assert probes["example.org"]["labels"]["instance"] == "https://example.org/health"
    assert probes["www.example-shop.org"]["scrapeUrl"] == (
        "http://blackbox-exporter:9115/probe?module=https_www_example_shop_org"
        "&target=https%3A%2F%2Fnginx%3A8443%2Fhealth"
    )
    # api and worker have no target here: their DNS names do not resolve outside the stack.
    assert {t["labels"]["job"] for t in targets} == EXPECTED_JOBS - {"api", "worker"}

    flags = json.loads(_get(running, "/api/v1/status/flags"))["data"]
    assert flags["storage.tsdb.path"] == "/prometheus"
    assert flags["storage.tsdb.retention.time"] == "30d"
    # Prometheus' size units are powers of 1024, and it says so when it prints them.
    assert flags["storage.tsdb.retention.size"] == "10GiB"

    groups = json.loads(_get(running, "/api/v1/rules"))["data"]["groups"]
    assert {group["file"] for group in groups} == {f"/etc/slipway/rules/{p.name}" for p in RULES}

    # Watchdog fires at the first evaluation: rules are evaluated, alerts produced.
    def watchdog() -> bool:
        alerts = json.loads(_get(running, "/api/v1/alerts"))["data"]["alerts"]
        return any(a["labels"]["alertname"] == "Watchdog" for a in alerts)

    _wait_for(running, watchdog, "Watchdog firing", timeout=40)

    assert "<h1>Slipway</h1>" in _get(running, "/consoles/index.html")

    # Its data lands on the volume, written by the unprivileged user.
    assert output("exec", running, "stat", "-c", "%U", "/prometheus/wal") == "prometheus"
    assert output("exec", running, "id", "-un") == "prometheus"


@pytest.mark.integration
def test_the_image_carries_its_labels_and_healthcheck(image: str) -> None:
    config = json.loads(docker("image", "inspect", image).stdout)[0]["Config"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "slipway-prometheus"
    assert labels["org.opencontainers.image.version"]
    assert labels["org.opencontainers.image.revision"]
    assert "/-/ready" in " ".join(config["Healthcheck"]["Test"])
    assert config["User"] == "prometheus"
