"""The shared test helpers (tests/support) and the rule that keeps them shared: no test module
imports from another test module."""

from __future__ import annotations

import ast
import asyncio
import datetime as dt
import itertools
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from support import tls
from support.docker import docker, logs, output
from support.waiting import wait_for, wait_for_async

pytestmark = pytest.mark.unit

TESTS = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- test imports


def _test_module_imports(path: Path) -> list[str]:
    """The imports in `path` that name a test module (test_*), as written."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = [f"{module}.{alias.name}".lstrip(".") for alias in node.names]
        else:
            continue
        found += [
            f"line {node.lineno}: {name}"
            for name in names
            if any(part.startswith("test_") for part in name.split("."))
        ]
    return found


def test_no_test_module_imports_from_another_test_module() -> None:
    offenders = {
        str(path.relative_to(TESTS)): imports
        for path in sorted(TESTS.rglob("*.py"))
        if (imports := _test_module_imports(path))
    }
    assert offenders == {}, (
        "a test module imports from another one: move what they share to tests/support/ (or a "
        f"fixture in the right conftest.py): {offenders}"
    )


def test_the_import_check_sees_every_form_of_import(tmp_path: Path) -> None:
    module = tmp_path / "test_sample.py"
    module.write_text(
        "import os\nimport test_a\nfrom test_b import x\nfrom e2e.test_c import y\n"
        "from e2e import test_d\nfrom support.waiting import wait_for\n"
        "def f():\n    from test_e import z\n"
    )
    assert _test_module_imports(module) == [
        "line 2: test_a",
        "line 3: test_b.x",
        "line 4: e2e.test_c.y",
        "line 5: e2e.test_d",
        "line 8: test_e.z",
    ]


# ---------------------------------------------------------------------------- wait_for


def test_wait_for_returns_the_first_truthy_value() -> None:
    values = iter([None, 0, "", "ready", "later"])
    assert wait_for(lambda: next(values), what="ready", timeout=5, interval=0.001) == "ready"


def test_wait_for_with_until_returns_the_value_it_accepts() -> None:
    counter = itertools.count()
    found = wait_for(lambda: next(counter), until=lambda n: n >= 3, what="3", interval=0.001)
    assert found == 3


def test_wait_for_times_out_naming_what_it_waited_for_and_the_last_value() -> None:
    states = itertools.cycle([{"status": "queued"}, {"status": "running"}])
    with pytest.raises(AssertionError) as failed:
        wait_for(
            lambda: next(states),
            until=lambda job: job["status"] == "done",
            what="the job done",
            timeout=0.05,
            interval=0.01,
            details=lambda: "worker log: stuck",
        )
    message = str(failed.value)
    assert message.startswith("the job done: not within 0.05s (last: {'status': ")
    assert message.endswith("\nworker log: stuck")


def test_wait_for_keeps_a_long_last_value_short() -> None:
    with pytest.raises(AssertionError) as failed:
        wait_for(lambda: "x" * 10_000, until=lambda _: False, what="nothing", timeout=0.01)
    assert len(str(failed.value)) < 2100


def test_wait_for_takes_ignored_errors_as_not_yet_and_names_the_last_one() -> None:
    attempts = iter([ConnectionRefusedError("refused"), ConnectionRefusedError("refused"), 7])

    def answer() -> int:
        got = next(attempts)
        if isinstance(got, Exception):
            raise got
        return got

    assert wait_for(answer, what="an answer", interval=0.001, ignoring=(OSError,)) == 7

    def refused() -> int:
        raise ConnectionRefusedError("port 9 refused")

    with pytest.raises(AssertionError, match=r"port 9 refused") as failed:
        wait_for(refused, what="an answer", timeout=0.02, interval=0.01, ignoring=(OSError,))
    assert isinstance(failed.value.__cause__, ConnectionRefusedError)


def test_any_other_error_ends_the_wait_at_once() -> None:
    calls = []

    def died() -> bool:
        calls.append(1)
        raise AssertionError("the container exited")

    with pytest.raises(AssertionError, match="the container exited"):
        wait_for(died, what="ready", timeout=60, ignoring=(OSError,))
    assert len(calls) == 1


def test_wait_for_async_returns_the_value_and_times_out_like_wait_for() -> None:
    counter = itertools.count()

    async def tick() -> int:
        return next(counter)

    found = asyncio.run(wait_for_async(tick, until=lambda n: n == 2, what="2", interval=0.001))
    assert found == 2
    with pytest.raises(AssertionError, match=r"^never: not within 0.02s \(last: \d+\)$"):
        asyncio.run(
            wait_for_async(tick, until=lambda n: n < 0, what="never", timeout=0.02, interval=0.01)
        )


# ---------------------------------------------------------------------------- docker


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `docker` on PATH that prints its arguments and exits with $FAKE_EXIT."""
    script = tmp_path / "docker"
    script.write_text('#!/bin/sh\necho "args: $*"\necho "on stderr" >&2\nexit "${FAKE_EXIT:-0}"\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    return script


def test_docker_runs_the_command_and_returns_its_output(
    fake_docker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert docker("ps", "-a").stdout == "args: ps -a\n"
    assert output("inspect", "x") == "args: inspect x"
    assert logs("x") == "args: logs x\non stderr\n"
    monkeypatch.setenv("FAKE_EXIT", "3")
    assert docker("rm", "x", check=False).returncode == 3


def test_a_failed_docker_command_fails_the_test_naming_it_but_not_every_argument(
    fake_docker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_EXIT", "1")
    with pytest.raises(AssertionError) as failed:
        docker("run", "-d", "--name", "c", "-e", "A=1", "-e", "SECRET=s3cr3t", "image")
    message = str(failed.value)
    assert message.startswith("docker run -d --name c -e A=1 ... exited 1:\n")
    assert "on stderr" in message
    assert "SECRET=s3cr3t\n" not in message.split(":", 1)[0]


# ---------------------------------------------------------------------------- tls


def test_a_certificate_signed_by_the_ca_verifies_and_says_what_it_was_asked() -> None:
    ca = tls.make_ca("Test CA", days=30)
    site = tls.make_cert("shop.test", "www.shop.test", signed_by=ca, days=10, server_auth=True)
    site.cert.verify_directly_issued_by(ca.cert)
    assert site.cert.issuer == ca.cert.subject
    san = site.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["shop.test", "www.shop.test"]
    now = dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=9, hours=23) < site.not_after - now <= dt.timedelta(days=10)
    assert site.not_after.microsecond == 0
    assert ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_a_self_signed_certificate_may_name_another_issuer() -> None:
    plain = tls.make_cert("a.test")
    assert plain.cert.issuer == plain.cert.subject
    plain.cert.verify_directly_issued_by(plain.cert)
    looks_issued = tls.make_cert("b.test", issuer="Test CA")
    assert looks_issued.cert.issuer == tls.name("Test CA")


def test_files_written_load_back_and_a_reissue_keeps_the_key(tmp_path: Path) -> None:
    ca = tls.make_ca("Test CA")
    ca.write(tmp_path, cert="ca.crt", key="ca.key")
    loaded = tls.load(tmp_path / "ca.crt", tmp_path / "ca.key")
    assert loaded.cert == ca.cert
    assert isinstance(loaded.key, ec.EllipticCurvePrivateKey)
    site = tls.make_cert("shop.test", signed_by=ca, days=300)
    short = tls.reissue(site.cert, loaded, days=5)
    short.verify_directly_issued_by(ca.cert)
    assert short.public_key() == site.cert.public_key()
    assert short.subject == site.cert.subject
    assert short.not_valid_after_utc < site.not_after
