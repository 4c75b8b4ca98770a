"""What the ha-manager CLI tests share: a real local API server on the real store, a
CliRunner bound to it, and the one-clear-line check for bad input."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator

import pytest
from click.testing import CliRunner, Result

from harepl.cli.ha_manager import cli
from harepl.runtime.api.local_backend import LocalApi


@pytest.fixture
def api() -> Iterator[LocalApi]:
    path = tempfile.mkdtemp(prefix="hcli-", dir="/tmp")
    with LocalApi(path) as running:
        yield running
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def ha(api: LocalApi) -> Callable[..., Result]:
    runner = CliRunner()

    def run(*args: str, ok: bool = True) -> Result:
        result = runner.invoke(cli, list(args), env={"HAREPL_API": api.socket_path, "HAREPL_TOKEN": ""})
        if ok:
            assert result.exit_code == 0, (args, result.output, result.exception)
        return result

    return run


def one_error_line(result: Result, exit_code: int, fragment: str) -> None:
    assert result.exit_code == exit_code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in result.output
