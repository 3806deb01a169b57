"""ops/backup/repository.py: what the image's tools print, read without running anything: the OK
line, `pgbackrest info --output=json`, the archiver's time, the scripts' log lines, the advice on
a failure and the `invoke backup.list` table."""

from __future__ import annotations

import pytest
from backup_testdata import (
    DIFF,
    FULL,
    INCR,
    LABEL,
    LAST_ARCHIVED,
    NO_BACKUPS,
    NO_STANZA,
    OK,
    PASSPHRASE_ADVICE,
    TWO_BACKUPS,
    WRONG_PASSPHRASE,
    WRONG_PASSPHRASE_MESSAGE,
    log,
    repository,
    utc,
)

from ops.backup import repository as backup
from ops.errors import OpsError

pytestmark = pytest.mark.unit


# ------------------------------------------------------------------------------------ require_ok


@pytest.mark.parametrize(
    "output",
    [
        OK,
        log("done") + OK,
        f"{log('done')}  {backup.OK_LINE}  \n\n",  # blanks around it, empty lines after it
        f"{log('done')}{backup.OK_LINE}\r\n",  # a host's pseudo-terminal line ending
    ],
)
def test_output_ending_with_the_ok_line_is_success(output: str) -> None:
    assert backup.require_ok(output, "the thing") == output


@pytest.mark.parametrize(
    "output",
    [
        "",
        "\n\n",
        log("done"),  # compose exited 0, but the script never got to its end
        OK + log("failed afterwards"),  # the OK line must be the last one
        f"echo {backup.OK_LINE}\n",  # a line merely containing it
    ],
)
def test_output_without_the_ok_line_last_is_a_failure(output: str) -> None:
    with pytest.raises(OpsError) as err:
        backup.require_ok(output, "the thing", "the hint")
    assert str(err.value).startswith("the thing failed. the hint")
    with pytest.raises(OpsError) as err:
        backup.require_ok(output, "the thing")
    assert str(err.value).startswith("the thing failed")


def test_a_failure_carries_the_last_lines_but_never_a_dump() -> None:
    output = (
        "\n".join(f"line {i}" for i in range(20))
        + "\n-----BEGIN SLIPWAY SANITIZED DUMP-----\nSECRETBASE64\n"
        + "-----END SLIPWAY SANITIZED DUMP-----\n"
        + log("pg_dump failed")
    )
    with pytest.raises(OpsError) as err:
        backup.require_ok(output, "the export", "nothing was changed")
    text = str(err.value)
    assert text.startswith("the export failed. nothing was changed; its last lines:\n")
    assert "SECRETBASE64" not in text and "pg_dump failed" in text
    assert "  line 19" in text and "line 8\n" not in text  # the last twelve lines only
    with pytest.raises(OpsError) as err:
        backup.require_ok("\n", "the export")
    assert str(err.value) == "the export failed (it printed nothing)"


# ------------------------------------------------------------------------------------ parse_info


def test_a_repository_without_the_stanza_reads_as_empty() -> None:
    assert backup.parse_info(NO_STANZA) == ("ok", ())


def test_a_stanza_without_backups_reads_as_empty() -> None:
    assert backup.parse_info(NO_BACKUPS) == ("ok", ())


def test_a_full_and_a_differential_backup_are_read_with_their_times_and_sizes() -> None:
    status, backups = backup.parse_info(TWO_BACKUPS)
    assert status == "ok"
    assert backups == (
        backup.BackupSet(
            label=FULL,
            type="full",
            start=utc("2026-11-29T02:00:01"),
            stop=utc("2026-11-29T02:00:09"),
            size=31876983,
            repo_size=4072346,
            repo=1,
        ),
        backup.BackupSet(
            label=DIFF,
            type="diff",
            start=utc("2026-11-30T02:00:02"),
            stop=utc("2026-11-30T02:00:05"),
            size=31876983,
            repo_size=212345,
            repo=1,
        ),
    )
    assert [b.seconds for b in backups] == [8.0, 3.0]


def test_compose_s_own_lines_around_the_json_are_skipped() -> None:
    # A host merges compose's stderr into the output.
    text = (
        "WARN[0000] Found orphan containers ([x]) for this project. If you removed or renamed "
        "this service in your compose file, you can run this command with the --remove-orphans "
        "flag to clean it up.\n"
        f"{TWO_BACKUPS}\n"
        " Container slipway-local-backup-restore-run-1f2e Removed\n"
    )
    assert backup.parse_info(text) == backup.parse_info(TWO_BACKUPS)
    assert backup.parse_info(text)[0] == "ok"
    assert backup.parse_info(text)[1][1].label == DIFF


def test_a_repository_that_cannot_be_decrypted_reports_the_repository_message() -> None:
    status, backups = backup.parse_info(WRONG_PASSPHRASE)
    assert status.startswith("repo1: [095]: unable to load info file")
    assert "FormatError: key/value found outside of section" in status
    assert backups == ()


def test_an_answer_that_is_not_json_is_refused_with_its_end() -> None:
    text = "WARN: environment contains invalid option 'cipher-pas'\nERROR: [031]: bad option\n"
    with pytest.raises(
        OpsError, match=r"(?s)did not answer JSON: WARN: .*ERROR: \[031\]: bad option"
    ):
        backup.parse_info(text)
    with pytest.raises(OpsError, match="did not answer JSON"):
        backup.parse_info("[]")


def test_an_undecryptable_file_quoted_with_line_breaks_still_parses_and_gets_the_advice() -> None:
    # pgBackRest quotes the first bytes of a file it cannot decrypt: raw control characters,
    # line breaks included, inside the JSON string; compose's own lines come before it.
    quoted = "key/value found outside of section at line 1: \x0c\x08ab\ncd\x1f"
    text = (
        "WARN[0000] Found orphan containers ([x])\n"
        '[{"name":"listings","status":{"code":99,"message":"other"},"backup":[],'
        '"repo":[{"key":1,"status":{"code":99,"message":"FormatError: ' + quoted + '"}}]}]\n'
    )
    status, backups = backup.parse_info(text)
    assert status.startswith("repo1: FormatError: key/value found outside of section")
    assert backups == ()
    assert "BACKUP_PASSPHRASE" in backup.advice(status)


# ---------------------------------------------------------------- the archiver, the log lines


def test_the_archiver_s_last_time_is_the_last_line_of_the_answer() -> None:
    assert backup.parse_last_archived(LAST_ARCHIVED) == utc("2026-11-30T03:40:00")
    # A host merges compose's own lines (warnings) into the output: they come first.
    warned = "WARN[0000] Found orphan containers ([x])\n" + LAST_ARCHIVED
    assert backup.parse_last_archived(warned) == utc("2026-11-30T03:40:00")


@pytest.mark.parametrize("answer", ["", "\n", "WARN[0000] something\n"])
def test_nothing_archived_yet_reads_as_no_time(answer: str) -> None:
    assert backup.parse_last_archived(answer) is None


def test_the_last_log_line_with_the_word_gives_the_message() -> None:
    output = (
        log("WAL archived up to 00000001000000000000000A")
        + "[archive] some plain line: archived\n"
        + log("WAL archived up to 00000001000000000000000B")
        + log("done")
        + OK
    )
    assert backup.last_message(output, "archived") == "WAL archived up to 00000001000000000000000B"
    assert backup.last_message(output, "replaced") == ""
    # A line that is not JSON after its brace is passed over.
    assert backup.last_message("{archived, not JSON\n", "archived") == ""


# ---------------------------------------------------------------------------------------- advice


@pytest.mark.parametrize(
    "output",
    [
        WRONG_PASSPHRASE_MESSAGE,
        "ERROR: [095]: CryptoError: unable to flush: [101] bad decrypt",
        "FormatError: key/value found outside of section at line 1: \x0f\x9d",
        "HINT: is or was the repo encrypted?",
    ],
)
def test_a_decryption_failure_gets_the_passphrase_advice(output: str) -> None:
    assert backup.advice(output).startswith(PASSPHRASE_ADVICE)
    assert "Rotating the passphrase" in backup.advice(output)
    assert backup.advice(output).endswith("nothing was changed")


@pytest.mark.parametrize(
    "output",
    [
        # Every restore logs its options: an encrypted repository is named in each of them.
        "2026-11-30 04:00:01.123 P00   INFO: restore command begin 2.48: --delta "
        "--exec-id=71-4b9a2e1c --log-level-console=info --pg1-path=/var/lib/postgresql/data "
        "--repo1-cipher-pass=<redacted> --repo1-cipher-type=aes-256-cbc "
        "--repo1-path=/var/lib/pgbackrest --stanza=listings",
        # [095] is not a decryption failure by itself.
        "ERROR: [095]: unable to load info file '/var/lib/pgbackrest/backup/listings/backup.info'"
        ":\nFileOpenError: unable to open file for read: [13] Permission denied",
        "ERROR: [056]: unable to find primary cluster - cannot proceed",
    ],
)
def test_other_failures_get_no_passphrase_advice(output: str) -> None:
    assert backup.advice(output) == ""


# ------------------------------------------------------------------------------ format_listing


def test_the_listing_has_one_line_per_backup_and_the_recovery_window() -> None:
    lines = backup.format_listing(repository(), LABEL)
    assert lines[0].split() == [
        "label", "type", "start", "stop", "secs", "db", "size", "stored", "repo",
    ]  # fmt: skip
    assert lines[1].split() == [
        FULL, "full", "2026-11-29T02:00:01Z", "2026-11-29T02:00:09Z", "8", "30.4MB", "3.9MB",
        "repo1",
    ]  # fmt: skip
    assert lines[2].split() == [
        DIFF, "diff", "2026-11-30T02:00:02Z", "2026-11-30T02:00:05Z", "3", "30.4MB", "207.4KB",
        "repo1",
    ]  # fmt: skip
    assert lines[3].startswith(
        "recovery window: 2026-11-29T02:00:09Z .. 2026-11-30T03:40:00Z (earliest: end of the "
        "oldest backup; latest: the newest archived WAL)"
    )
    assert len(lines) == 4


def test_an_incremental_label_keeps_the_columns_aligned() -> None:
    assert len(INCR) == 33
    rows = (
        backup.BackupSet(
            FULL, "full", utc("2026-11-29T02:00:01"), utc("2026-11-29T02:00:09"), 1, 1, 1
        ),
        backup.BackupSet(
            INCR, "incr", utc("2026-11-30T12:00:03"), utc("2026-11-30T12:00:04"), 1, 1, 2
        ),
    )
    lines = backup.format_listing(backup.Repository("ok", rows, None), LABEL)
    column = lines[0].index("type")
    assert column > len(INCR)  # a space between the longest label and its type
    assert lines[1][column:].startswith("full ")
    assert lines[2][column:].startswith("incr ")
    assert lines[2].startswith(f"{INCR} ")
    assert lines[2].endswith("repo2")
    # The columns after it stay under their headers: nothing pushed right by a long label.
    start = lines[0].index("start")
    assert lines[1][start:].startswith("2026-11-29T02:00:01Z ")
    assert lines[2][start:].startswith("2026-11-30T12:00:03Z ")
    assert len(lines[1]) == len(lines[2])


def test_an_empty_repository_is_listed_as_such_without_a_window() -> None:
    lines = backup.format_listing(backup.Repository("ok", (), None), LABEL)
    assert lines[1:] == [f"no backups in the repository of {LABEL} yet"]
    assert not any("recovery window" in line for line in lines)
