"""Secrets: generated once for local environments, never overwritten, required elsewhere."""

from __future__ import annotations

import stat
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from ops_testdata import LOCAL_YAML

from ops import config, secrets
from ops.errors import OpsError

pytestmark = pytest.mark.unit

WriteEnv = Callable[[str, str], Path]


@pytest.fixture
def local(write_env: WriteEnv) -> config.Environment:
    write_env("local", LOCAL_YAML)
    return config.load("local")


@pytest.fixture
def staging(write_env: WriteEnv) -> config.Environment:
    # `ssh` targets do not exist yet: a non-local environment is simulated with replace().
    write_env("staging", LOCAL_YAML.replace("name: local", "name: staging"))
    return replace(config.load("staging"), target="ssh")


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
    assert loaded.generated == ("REDIS_PASSWORD", "LISTINGS_API_KEY_PEPPER")
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
    (tmp_path / ".env.staging").write_text("POSTGRES_PASSWORD=x1\nREDIS_PASSWORD=x2\n")
    with pytest.raises(OpsError) as err:
        secrets.load(staging, environ={})
    message = str(err.value)
    assert "LISTINGS_API_KEY_PEPPER" in message
    assert ".env.staging" in message
    assert "POSTGRES_PASSWORD" not in message
    assert not (tmp_path / ".env.staging").read_text().count("PEPPER")


def test_placeholder_secret_outside_local_is_refused(
    staging: config.Environment, tmp_path: Path
) -> None:
    (tmp_path / ".env.staging").write_text(
        "POSTGRES_PASSWORD=change-me\nREDIS_PASSWORD=r\nLISTINGS_API_KEY_PEPPER=p\n"
    )
    with pytest.raises(OpsError, match=r"placeholder secret.*POSTGRES_PASSWORD"):
        secrets.load(staging, environ={})


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
