"""Helpers for tests of the `nasrec` command (not a test module: `pythonpath = ["tests"]` makes it importable)."""

from __future__ import annotations

import sys

import pytest

from nasrec import cli


def run_main(argv: list[str], capsys, monkeypatch) -> tuple[int, str, str]:
    """`nasrec ARGV` through the console-script function `nasrec.cli.main`, in this process."""
    monkeypatch.setattr(sys, "argv", ["nasrec", *argv])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (0 if code is None else code), out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
