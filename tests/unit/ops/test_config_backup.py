"""The `backup:` section: defaults, every key, validation, and what reaches compose."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from ops import compose, config
from ops.errors import OpsError
from ops.secrets import Secrets

pytestmark = pytest.mark.unit

WriteEnv = Callable[[str, str], Path]
DEFAULT_ENV = {
    "SLIPWAY_BACKUP_TIME": "02:00",
    "SLIPWAY_BACKUP_FULL_DAYS": "sun",
    "SLIPWAY_BACKUP_RETENTION_DAYS": "30",
    "SLIPWAY_BACKUP_CHECK_INTERVAL": "900",
    "SLIPWAY_BACKUP_RETRY_INTERVAL": "3600",
    "SLIPWAY_BACKUP_PROCESS_MAX": "2",
    "SLIPWAY_BACKUP_COMPRESS": "lz4",
}


def _load(write_env: WriteEnv, body: str = "") -> config.Environment:
    write_env("e2e", f"name: e2e\ntarget: local\n{body}\n")
    return config.load("e2e")


def test_without_a_section_backups_run_daily_at_two_full_on_sundays_for_30_days(
    write_env: WriteEnv,
) -> None:
    env = _load(write_env)
    assert env.backup == config.Backup()
    assert env.backup == config.Backup(
        time="02:00",
        full_days=("sun",),
        retention_days=30,
        check_every=900,
        retry_every=3600,
        process_max=2,
        compress="lz4",
        before_migrations=True,
    )
    assert env.backup.compose_env() == DEFAULT_ENV


def test_the_compose_file_falls_back_to_the_same_defaults() -> None:
    """compose.yaml's `${SLIPWAY_BACKUP_X:-default}` fallbacks apply when compose runs without
    ops (by hand): they must say what config.Backup says."""
    text = (Path(__file__).resolve().parents[3] / "compose" / "compose.yaml").read_text()
    fallbacks = dict(re.findall(r"\$\{(SLIPWAY_BACKUP_[A-Z_]+):-([^}]*)\}", text))
    assert fallbacks == DEFAULT_ENV


def test_an_empty_section_means_the_defaults(write_env: WriteEnv) -> None:
    assert _load(write_env, "backup:").backup == config.Backup()
    assert _load(write_env, "backup: {}").backup == config.Backup()


def test_every_key_is_read(write_env: WriteEnv) -> None:
    env = _load(
        write_env,
        "backup:\n"
        '  time: "23:45"\n'
        "  full_days: [wed, sun]\n"
        "  retention_days: 14\n"
        "  check_every: 600\n"
        "  retry_every: 900\n"
        "  process_max: 4\n"
        "  compress: zst\n"
        "  before_migrations: false\n",
    )
    assert env.backup == config.Backup(
        time="23:45",
        full_days=("wed", "sun"),
        retention_days=14,
        check_every=600,
        retry_every=900,
        process_max=4,
        compress="zst",
        before_migrations=False,
    )
    assert env.backup.compose_env() == {
        "SLIPWAY_BACKUP_TIME": "23:45",
        "SLIPWAY_BACKUP_FULL_DAYS": "wed,sun",
        "SLIPWAY_BACKUP_RETENTION_DAYS": "14",
        "SLIPWAY_BACKUP_CHECK_INTERVAL": "600",
        "SLIPWAY_BACKUP_RETRY_INTERVAL": "900",
        "SLIPWAY_BACKUP_PROCESS_MAX": "4",
        "SLIPWAY_BACKUP_COMPRESS": "zst",
    }


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        ("[Sunday, WED]", ("sun", "wed")),  # full names and any case: the first three letters
        ('"sat, sun"', ("sat", "sun")),  # a comma-separated string
        ("[sun, sunday, Sun]", ("sun",)),  # repeated days count once
        ("[mon, tue, wed, thu, fri, sat, sun]", config.WEEKDAYS),
    ],
)
def test_full_days_are_normalised(write_env: WriteEnv, days: str, expected: tuple[str]) -> None:
    env = _load(write_env, f"backup: {{full_days: {days}}}")
    assert env.backup.full_days == expected
    assert env.backup.compose_env()["SLIPWAY_BACKUP_FULL_DAYS"] == ",".join(expected)


@pytest.mark.parametrize("compress", config.COMPRESS_TYPES)
def test_every_pgbackrest_compression_is_accepted(write_env: WriteEnv, compress: str) -> None:
    env = _load(write_env, f"backup: {{compress: {compress}}}")
    assert env.backup.compose_env()["SLIPWAY_BACKUP_COMPRESS"] == compress


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('backup: {time: "25:00"}', r"'backup\.time' is '25:00', not a time of day"),
        ('backup: {time: "2:00"}', r"'backup\.time' is '2:00', not a time of day"),
        ('backup: {time: "02:60"}', r"'backup\.time' is '02:60', not a time of day"),
        ('backup: {time: "noon"}', r"'backup\.time' is 'noon', not a time of day"),
        ("backup: {full_days: [funday]}", r"'backup\.full_days' is \['funday'\], not a list"),
        ("backup: {full_days: [sun, funday]}", r"'backup\.full_days' is .*, not a list of days"),
        ("backup: {full_days: []}", r"'backup\.full_days' is \[\], not a list of days"),
        ('backup: {full_days: ""}', r"'backup\.full_days' is \[''\], not a list of days"),
        ("backup: {full_days: {sun: true}}", r"'backup\.full_days' is .*, not a list of days"),
        ("backup: {compress: bz2}", r"'backup\.compress' is 'bz2', not a pgBackRest compression"),
        ('backup: {before_migrations: "yes"}', r"'backup\.before_migrations' must be true or"),
        ("backup: {before_migrations: 1}", r"'backup\.before_migrations' must be true or false"),
        ("backup: {retention_days: 0}", r"'backup\.retention_days' must be an integer >= 1, got 0"),
        ("backup: {retention_days: -3}", r"'backup\.retention_days' must be an integer >= 1"),
        ("backup: {retention_days: 30d}", r"'backup\.retention_days' must be an integer >= 1"),
        ("backup: {check_every: 59}", r"'backup\.check_every' must be an integer >= 60, got 59"),
        ("backup: {retry_every: 10}", r"'backup\.retry_every' must be an integer >= 60, got 10"),
        ("backup: {process_max: 0}", r"'backup\.process_max' must be an integer >= 1, got 0"),
        ("backup: {process_max: true}", r"'backup\.process_max' must be an integer >= 1"),
        ("backup: {hour: 2}", r"'backup\.hour' is unknown"),
        ("backup: daily", r"'backup' must be a mapping"),
    ],
)
def test_mistakes_name_the_field_and_the_fix(write_env: WriteEnv, body: str, message: str) -> None:
    with pytest.raises(OpsError, match=message) as err:
        _load(write_env, body)
    assert "Fix:" in str(err.value)


def test_the_fixes_say_what_to_write(write_env: WriteEnv) -> None:
    with pytest.raises(OpsError, match=r'Fix: write HH:MM in UTC, e\.g\. "02:00"'):
        _load(write_env, 'backup: {time: "25:00"}')
    with pytest.raises(OpsError, match=r"Fix: write e\.g\. \[sun\] or \[wed, sun\] \(days: mon"):
        _load(write_env, "backup: {full_days: [funday]}")
    with pytest.raises(OpsError, match=r"Fix: use one of: lz4, zst, gz, none"):
        _load(write_env, "backup: {compress: bz2}")


def test_an_unquoted_time_of_day_is_read_as_written(write_env: WriteEnv) -> None:
    # `time: 02:00` (the default, leading zero) stays a string; `time: 12:30` does not.
    assert _load(write_env, "backup: {time: 02:00}").backup.time == "02:00"
    assert _load(write_env, "backup: {time: 12:30}").backup.time == "12:30"
    assert _load(write_env, "backup: {time: 23:59}").backup.time == "23:59"


def test_full_days_take_short_and_long_names_and_nothing_else(write_env: WriteEnv) -> None:
    env = _load(write_env, "backup: {full_days: [Sunday, wed, SAT]}")
    assert env.backup.full_days == ("sun", "wed", "sat")
    for bad in ("sunshine", "saturnalia", "tues"):
        with pytest.raises(OpsError, match=r"backup\.full_days"):
            _load(write_env, f"backup: {{full_days: [{bad}]}}")


def test_the_section_reaches_compose(write_env: WriteEnv, tmp_path: Path) -> None:
    env = _load(write_env, "backup: {time: '04:30', full_days: [sat], retention_days: 7}")
    build = compose.Build("v1", "abc", tmp_path / "ca.pem", {})
    values = compose.Compose(env, Secrets({}, tmp_path / ".env.e2e"), build, tmp_path)
    seen = values.invocation("config").env
    assert {k: seen[k] for k in DEFAULT_ENV} == {
        **DEFAULT_ENV,
        "SLIPWAY_BACKUP_TIME": "04:30",
        "SLIPWAY_BACKUP_FULL_DAYS": "sat",
        "SLIPWAY_BACKUP_RETENTION_DAYS": "7",
    }
