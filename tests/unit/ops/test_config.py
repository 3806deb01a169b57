"""Environment files: loaded into typed values, every mistake named with file, field and fix."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from ops_testdata import LOCAL_YAML

from ops import config, paths
from ops.errors import OpsError

pytestmark = pytest.mark.unit

WriteEnv = Callable[[str, str], Path]


def test_the_committed_local_file_loads_with_the_documented_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SLIPWAY_ENVIRONMENTS_DIR", raising=False)
    monkeypatch.delenv("SLIPWAY_ROOT", raising=False)
    env = config.load("local")
    assert env.name == "local"
    assert env.target == "local"
    assert env.tls == "local-ca"
    assert env.domains == ("localhost",)
    assert env.bind == "127.0.0.1"
    assert (env.ports.http, env.ports.https) == (8080, 8443)
    assert (env.replicas.api, env.replicas.worker) == (2, 2)
    assert env.project_name == "slipway-local"
    assert env.overlay_name == "local"
    assert env.https_url == "https://localhost:8443"
    assert env.hosts == ()
    assert env.verify == paths.REPO_ROOT / ".slipway" / "local" / "ca.crt"
    assert env.resources.compose_env()["SLIPWAY_API_MEMORY"] == "0"


def test_defaults_derive_project_and_overlay_from_the_name(write_env: WriteEnv) -> None:
    write_env("e2e", "name: e2e\ntarget: local\nports: {http: 18080, https: 18443}\n")
    env = config.load("e2e")
    assert env.project_name == "slipway-e2e"
    assert env.overlay_name == "e2e"
    assert env.ports.https == 18443
    assert env.nginx.max_feed_bytes == 64 * 1024 * 1024


def test_project_and_overlay_can_be_overridden(write_env: WriteEnv) -> None:
    write_env("e2e", "name: e2e\ntarget: local\nproject: slipway-e2e-x\noverlay: local\n")
    env = config.load("e2e")
    assert env.project_name == "slipway-e2e-x"
    assert env.overlay_name == "local"


def test_unknown_environment_lists_the_available_ones(write_env: WriteEnv) -> None:
    write_env("local", LOCAL_YAML)
    write_env("e2e", LOCAL_YAML.replace("name: local", "name: e2e"))
    with pytest.raises(OpsError) as err:
        config.load("staging")
    message = str(err.value)
    assert "unknown environment 'staging'" in message
    assert "Available: e2e, local" in message
    assert "staging.yaml" in message


def test_unknown_field_names_file_field_and_allowed_fields(write_env: WriteEnv) -> None:
    path = write_env("local", LOCAL_YAML + "replica: 3\n")
    with pytest.raises(OpsError) as err:
        config.load("local")
    message = str(err.value)
    assert str(path) in message
    assert "field 'replica' is unknown" in message
    assert "replicas" in message  # the fix lists the valid names


def test_unknown_nested_field_is_named_with_its_section(write_env: WriteEnv) -> None:
    write_env("local", LOCAL_YAML.replace("{http: 8080,", "{htp: 8080,"))
    with pytest.raises(OpsError, match=r"field 'ports\.htp' is unknown.*Fix: .*http, https"):
        config.load("local")


def test_wrong_type_is_named(write_env: WriteEnv) -> None:
    write_env("local", LOCAL_YAML.replace("api: 2", 'api: "two"'))
    with pytest.raises(OpsError) as err:
        config.load("local")
    assert "field 'replicas.api' must be an integer >= 1, got a string 'two'" in str(err.value)
    assert "Fix:" in str(err.value)


def test_boolean_is_not_accepted_as_an_integer(write_env: WriteEnv) -> None:
    write_env("local", LOCAL_YAML.replace("worker: 1", "worker: true"))
    with pytest.raises(OpsError, match=r"'replicas\.worker' must be an integer"):
        config.load("local")


@pytest.mark.parametrize("port", ["0", "70000", "-1"])
def test_out_of_range_port_is_refused(write_env: WriteEnv, port: str) -> None:
    write_env("local", LOCAL_YAML.replace("https: 8443", f"https: {port}"))
    with pytest.raises(OpsError) as err:
        config.load("local")
    assert "field 'ports.https' must be a port number between 1 and 65535" in str(err.value)


def test_same_port_twice_is_refused(write_env: WriteEnv) -> None:
    write_env("local", LOCAL_YAML.replace("https: 8443", "https: 8080"))
    with pytest.raises(OpsError, match="http and https are both 8080"):
        config.load("local")


def test_missing_required_field_is_named(write_env: WriteEnv) -> None:
    write_env("local", LOCAL_YAML.replace("target: local\n", ""))
    with pytest.raises(OpsError, match=r"field 'target' is missing.*Fix: add 'target:'"):
        config.load("local")


def test_unsupported_target_lists_the_supported_ones(write_env: WriteEnv) -> None:
    write_env("local", LOCAL_YAML.replace("target: local", "target: kubernetes"))
    with pytest.raises(OpsError, match=r"field 'target' is 'kubernetes'.*use one of: local, ssh"):
        config.load("local")


def test_name_must_match_the_file(write_env: WriteEnv) -> None:
    write_env("local", LOCAL_YAML.replace("name: local", "name: prod"))
    with pytest.raises(OpsError, match=r"field 'name' is 'prod' but the file is local\.yaml"):
        config.load("local")


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("bind: 127.0.0.1", "bind: localhost", "bind"),
        ("domains: [localhost]", "domains: []", "domains"),
        ("domains: [localhost]", "domains: [bad_name!]", "domains[0]"),
        ("max_feed_size: 64m", "max_feed_size: lots", "nginx.max_feed_size"),
        ("rate_limit: 50", "rate_limit: 0", "nginx.rate_limit"),
        ("rate_burst: 100", "rate_burst: 100, ingest_connections: 0", "nginx.ingest_connections"),
        ("rate_burst: 100", "rate_burst: 100, viewer_rate_burst: -1", "nginx.viewer_rate_burst"),
        ("rate_burst: 100", "rate_burst: 100, ready_rate_limit: fast", "nginx.ready_rate_limit"),
    ],
)
def test_invalid_values_are_named(write_env: WriteEnv, old: str, new: str, field: str) -> None:
    write_env("local", LOCAL_YAML.replace(old, new))
    with pytest.raises(OpsError, match=re.escape(f"field '{field}'")):
        config.load("local")


def test_not_a_mapping_is_refused(write_env: WriteEnv) -> None:
    write_env("local", "- just\n- a list\n")
    with pytest.raises(OpsError, match="must be a mapping, got a list"):
        config.load("local")


def test_invalid_yaml_names_the_file(write_env: WriteEnv) -> None:
    path = write_env("local", "name: [unclosed\n")
    with pytest.raises(OpsError, match=f"{path}: not valid YAML"):
        config.load("local")


def test_sizes_use_nginx_syntax() -> None:
    assert config.parse_size("512k") == 512 * 1024
    assert config.parse_size("64m") == 64 * 1024 * 1024
    assert config.parse_size("1g") == 1024**3
    assert config.parse_size("1000") == 1000
    with pytest.raises(ValueError, match="10mb"):
        config.parse_size("10mb")


def test_the_service_mode_defaults_to_local_for_other_local_environments(
    write_env: WriteEnv,
) -> None:
    write_env("e2e", "name: e2e\ntarget: local\n")
    assert config.load("e2e").listings_env == "local"
    write_env("test", "name: test\ntarget: local\n")
    assert config.load("test").listings_env == "test"
    write_env("demo", "name: demo\ntarget: local\nlistings_env: staging\n")
    assert config.load("demo").listings_env == "staging"


def test_an_unknown_service_mode_lists_the_valid_ones(write_env: WriteEnv) -> None:
    write_env("e2e", "name: e2e\ntarget: local\nlistings_env: dev\n")
    with pytest.raises(OpsError, match="use one of: local, test, staging, production"):
        config.load("e2e")


def test_edge_knobs_are_read_from_the_nginx_section(write_env: WriteEnv) -> None:
    write_env(
        "local",
        LOCAL_YAML.replace(
            "rate_burst: 100",
            "rate_burst: 100, viewer_rate_limit: 3, viewer_rate_burst: 0, "
            "ready_rate_limit: 2, ready_rate_burst: 1, ingest_connections: 9",
        ),
    )
    nginx = config.load("local").nginx
    assert (nginx.viewer_rate_limit, nginx.viewer_rate_burst) == (3, 0)
    assert (nginx.ready_rate_limit, nginx.ready_rate_burst) == (2, 1)
    assert nginx.ingest_connections == 9
