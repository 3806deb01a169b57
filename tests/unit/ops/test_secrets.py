"""Secrets: generated once for local environments, never overwritten, required for hosts."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from listings import settings as service_settings
from ops_testdata import LOCAL_YAML, WriteEnv

from ops import config, secrets
from ops.errors import OpsError

pytestmark = pytest.mark.unit

SSH_YAML = """\
name: {name}
target: ssh
domains: [{name}.example.org]
hosts: [{{ssh: deploy@203.0.113.10}}]
"""
# Values the service accepts in staging and production: long, random-looking, URL-safe.
GOOD = {
    "POSTGRES_PASSWORD": "Jq3vN8xR2mT5wK7pL4sY9b",
    "REDIS_PASSWORD": "Hd6fG1kZ8cV3nB5mQ2wE7r",
    "LISTINGS_API_KEY_PEPPER": "uT4yI9oP2aS6dF1gH8jK3lZ7xC5vB0nM4qW",
    "BACKUP_PASSPHRASE": "Rk2wQ9zL5tX8vC1nB7mJ4hG6fD3sA0pY2eU",
}


def dotenv(values: dict[str, str]) -> str:
    return "".join(f"{name}={value}\n" for name, value in values.items())


@pytest.fixture
def local(write_env: WriteEnv) -> config.Environment:
    write_env("local", LOCAL_YAML)
    return config.load("local")


@pytest.fixture
def staging(write_env: WriteEnv) -> config.Environment:
    write_env("staging", SSH_YAML.format(name="staging"))
    return config.load("staging")


@pytest.fixture
def sandbox(write_env: WriteEnv) -> config.Environment:
    """A host environment whose service runs in local mode (no length or wording rules)."""
    write_env("sandbox", SSH_YAML.format(name="sandbox") + "listings_env: local\n")
    return config.load("sandbox")


def test_first_load_generates_every_secret_into_a_0600_file(
    local: config.Environment, tmp_path: Path
) -> None:
    loaded = secrets.load(local, environ={})
    path = tmp_path / ".env.local"
    assert loaded.file == path
    assert set(loaded.generated) == set(secrets.REQUIRED)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    on_disk = secrets.read_file(path)
    assert set(on_disk) == set(secrets.REQUIRED)
    assert all(len(value) >= 40 for value in on_disk.values())
    assert dict(loaded.values) == on_disk


def test_second_load_changes_nothing(local: config.Environment, tmp_path: Path) -> None:
    first = secrets.load(local, environ={})
    before = (tmp_path / ".env.local").read_text()
    second = secrets.load(local, environ={})
    assert second.generated == ()
    assert (tmp_path / ".env.local").read_text() == before
    assert second.values == first.values


def test_existing_values_are_kept_and_only_missing_ones_added(
    local: config.Environment, tmp_path: Path
) -> None:
    path = tmp_path / ".env.local"
    path.write_text("# mine\nPOSTGRES_PASSWORD='kept-value'\nOTHER=1")
    loaded = secrets.load(local, environ={})
    assert loaded.generated == ("REDIS_PASSWORD", "LISTINGS_API_KEY_PEPPER", "BACKUP_PASSPHRASE")
    text = path.read_text()
    assert text.startswith("# mine\nPOSTGRES_PASSWORD='kept-value'\nOTHER=1\n")
    assert loaded.values["POSTGRES_PASSWORD"] == "kept-value"


def test_process_environment_wins_and_is_not_written(
    local: config.Environment, tmp_path: Path
) -> None:
    loaded = secrets.load(local, environ={"REDIS_PASSWORD": "from-ci"})
    assert loaded.values["REDIS_PASSWORD"] == "from-ci"
    assert "REDIS_PASSWORD" not in secrets.read_file(tmp_path / ".env.local")


def test_missing_secret_outside_local_names_it_and_where_to_set_it(
    staging: config.Environment, tmp_path: Path
) -> None:
    path = tmp_path / ".env.staging"
    path.write_text(dotenv({"POSTGRES_PASSWORD": GOOD["POSTGRES_PASSWORD"]}))
    before = path.read_text()
    with pytest.raises(OpsError) as err:
        secrets.load(staging, environ={})
    message = str(err.value)
    assert (
        "  - REDIS_PASSWORD is missing\n  - LISTINGS_API_KEY_PEPPER is missing\n"
        "  - BACKUP_PASSPHRASE is missing\n" in message
    )
    assert f"Fix: set them in {path} (see .env.example) or export them" in message
    assert "POSTGRES_PASSWORD" not in message
    assert path.read_text() == before


def test_require_never_generates_a_secret_for_a_host(
    staging: config.Environment, tmp_path: Path
) -> None:
    with pytest.raises(OpsError) as err:
        secrets.require(staging, environ={})
    for name in secrets.REQUIRED:
        assert f"  - {name} is missing" in str(err.value)
    assert not (tmp_path / ".env.staging").exists()


def test_asking_to_generate_secrets_for_a_host_is_refused(
    staging: config.Environment, tmp_path: Path
) -> None:
    with pytest.raises(OpsError, match=r"never generated; call secrets\.require\(\)"):
        secrets.load(staging, environ={}, generate=True)
    assert not (tmp_path / ".env.staging").exists()


def test_require_merges_the_file_under_the_process_environment(
    staging: config.Environment, tmp_path: Path
) -> None:
    (tmp_path / ".env.staging").write_text(
        dotenv({**GOOD, "REDIS_PASSWORD": "change-me"}) + "UNRELATED=1\n"
    )
    ci_pepper = "Zx8Cv7Bn6Mq5Wr4Et3Yu2Io1Pa9Sd0FgHjK"
    loaded = secrets.require(
        staging,
        environ={"REDIS_PASSWORD": GOOD["REDIS_PASSWORD"], "LISTINGS_API_KEY_PEPPER": ci_pepper},
    )
    assert dict(loaded.values) == {**GOOD, "LISTINGS_API_KEY_PEPPER": ci_pepper}
    assert loaded.generated == ()
    assert loaded.file == tmp_path / ".env.staging"


def test_placeholder_secret_outside_local_is_refused(
    sandbox: config.Environment, tmp_path: Path
) -> None:
    (tmp_path / ".env.sandbox").write_text(dotenv({**GOOD, "POSTGRES_PASSWORD": "change-me"}))
    with pytest.raises(OpsError) as err:
        secrets.require(sandbox, environ={})
    message = str(err.value)
    assert "  - POSTGRES_PASSWORD is the placeholder from .env.example\n" in message
    assert "REDIS_PASSWORD" not in message


def test_a_host_in_local_mode_accepts_short_values(
    sandbox: config.Environment, tmp_path: Path
) -> None:
    short = {
        "POSTGRES_PASSWORD": "pw1",
        "REDIS_PASSWORD": "pw2",
        "LISTINGS_API_KEY_PEPPER": "p3",
        "BACKUP_PASSPHRASE": "p4",
    }
    (tmp_path / ".env.sandbox").write_text(dotenv(short))
    assert dict(secrets.require(sandbox, environ={}).values) == short


@pytest.mark.parametrize(
    "value", ["pa@ss-word-0123456789", "pass/word-0123456789", "p w 0123456789abc"]
)
def test_a_password_that_would_break_its_url_is_refused_for_hosts(
    sandbox: config.Environment, tmp_path: Path, value: str
) -> None:
    (tmp_path / ".env.sandbox").write_text(dotenv({**GOOD, "REDIS_PASSWORD": f"'{value}'"}))
    with pytest.raises(OpsError, match=r"REDIS_PASSWORD has characters that break the connection"):
        secrets.require(sandbox, environ={})


def test_every_unfit_secret_is_listed_at_once_in_staging(
    staging: config.Environment, tmp_path: Path
) -> None:
    (tmp_path / ".env.staging").write_text(
        dotenv(
            {
                "POSTGRES_PASSWORD": "short",
                "REDIS_PASSWORD": "my-dev-redis-password-0123",
                "LISTINGS_API_KEY_PEPPER": "x" * 40,
                "BACKUP_PASSPHRASE": "Rk2wQ9zL5tX8vC1nB7mJ",
            }
        )
    )
    with pytest.raises(OpsError) as err:
        secrets.require(staging, environ={})
    message = str(err.value)
    assert "  - POSTGRES_PASSWORD is shorter than 16 characters (listings_env staging" in message
    assert "  - REDIS_PASSWORD looks like a placeholder or development value" in message
    assert "  - LISTINGS_API_KEY_PEPPER is the placeholder from .env.example" in message
    assert "  - BACKUP_PASSPHRASE is shorter than 32 characters (listings_env staging" in message
    assert "token_urlsafe(32)" in message
    assert "my-dev-redis-password-0123" not in message  # names only, never values


def test_a_missing_or_placeholder_backup_passphrase_stops_a_host_deploy(
    staging: config.Environment, tmp_path: Path
) -> None:
    """Without the passphrase no backup can be written or restored: it is required like the
    database password, and the example value is refused on hosts."""
    missing = {name: value for name, value in GOOD.items() if name != "BACKUP_PASSPHRASE"}
    (tmp_path / ".env.staging").write_text(dotenv(missing))
    with pytest.raises(OpsError, match=r"  - BACKUP_PASSPHRASE is missing"):
        secrets.require(staging, environ={})
    (tmp_path / ".env.staging").write_text(dotenv({**GOOD, "BACKUP_PASSPHRASE": "change-me"}))
    with pytest.raises(OpsError) as err:
        secrets.require(staging, environ={})
    assert "  - BACKUP_PASSPHRASE is the placeholder from .env.example" in str(err.value)
    assert "POSTGRES_PASSWORD" not in str(err.value)
    loaded = secrets.require(staging, environ={"BACKUP_PASSPHRASE": GOOD["BACKUP_PASSPHRASE"]})
    assert loaded.values["BACKUP_PASSPHRASE"] == GOOD["BACKUP_PASSPHRASE"]


def _service_refuses(env: str, pepper: str, password: str) -> bool:
    candidate = service_settings.Settings(
        env=env,
        api_key_pepper=pepper,
        database_url=f"postgresql+asyncpg://listings:{password}@postgres:5432/listings",
        redis_url=f"redis://:{GOOD['REDIS_PASSWORD']}@redis:6379/0",
    )
    return bool(service_settings.safety_problems(candidate))


@pytest.mark.parametrize(
    ("pepper", "password"),
    [
        (GOOD["LISTINGS_API_KEY_PEPPER"], GOOD["POSTGRES_PASSWORD"]),
        ("a" * 31, GOOD["POSTGRES_PASSWORD"]),
        ("an-example-pepper-that-is-long-enough-0123", GOOD["POSTGRES_PASSWORD"]),
        ("insecure" + "7" * 30, GOOD["POSTGRES_PASSWORD"]),
        (GOOD["LISTINGS_API_KEY_PEPPER"], "15-characters-x"),
        (GOOD["LISTINGS_API_KEY_PEPPER"], "dev_0123456789abcdef"),
        (GOOD["LISTINGS_API_KEY_PEPPER"], "devices0123456789abc"),
        (GOOD["LISTINGS_API_KEY_PEPPER"], "1234567890123456789"),
    ],
)
@pytest.mark.parametrize("mode", ["staging", "production"])
def test_hosts_refuse_exactly_what_the_service_would_refuse_at_start(
    write_env: WriteEnv, tmp_path: Path, mode: str, pepper: str, password: str
) -> None:
    write_env("rehearsal", SSH_YAML.format(name="rehearsal") + f"listings_env: {mode}\n")
    env = config.load("rehearsal")
    values = {**GOOD, "LISTINGS_API_KEY_PEPPER": pepper, "POSTGRES_PASSWORD": password}
    refused = bool(secrets.problems(env, values))
    assert refused == _service_refuses(mode, pepper, password)


def test_a_local_environment_in_staging_mode_gets_generated_secrets_the_service_accepts(
    write_env: WriteEnv, tmp_path: Path
) -> None:
    write_env("demo", "name: demo\ntarget: local\nlistings_env: staging\n")
    env = config.load("demo")
    loaded = secrets.load(env, environ={})
    assert set(loaded.generated) == set(secrets.REQUIRED)
    assert secrets.problems(env, loaded.values) == []


def test_values_never_appear_in_repr(local: config.Environment) -> None:
    loaded = secrets.load(local, environ={})
    text = repr(loaded)
    assert all(value not in text for value in loaded.values.values())


def test_dotenv_parsing_handles_quotes_comments_and_export(tmp_path: Path) -> None:
    text = "# c\n\nexport A=1\nB = \"two words\"\nC='x#y'\nD=plain # trailing\n"
    assert secrets.parse_dotenv(text, tmp_path / "f") == {
        "A": "1",
        "B": "two words",
        "C": "x#y",
        "D": "plain",
    }


def test_dotenv_garbage_line_names_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(OpsError, match=r"f:2: expected KEY=VALUE"):
        secrets.parse_dotenv("A=1\nnot a pair\n", tmp_path / "f")


def test_env_example_documents_every_secret() -> None:
    example = Path(__file__).resolve().parents[3] / ".env.example"
    assert set(secrets.parse_dotenv(example.read_text(), example)) == set(secrets.REQUIRED)
