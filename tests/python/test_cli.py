"""The console scripts screed and screectl (scree/_cli.py): they exec the
programs installed in scree/_bin, and say what is missing where there are
none (a source tree on PYTHONPATH)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import scree
from scree import _cli

NATIVE = scree.native_available()


def run_entry(name: str, *args: str) -> subprocess.CompletedProcess:
    code = f"import sys; sys.argv[0] = {name!r}; from scree._cli import {name}; {name}()"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                          text=True, env=env, timeout=60)


def test_program_path_names_only_the_two_programs():
    assert _cli.program_path("screed").endswith(os.path.join("scree", "_bin", "screed"))
    with pytest.raises(ValueError, match="'screed' and 'screectl'"):
        _cli.program_path("sh")


@pytest.mark.skipif(not os.access(_cli.program_path("screed"), os.X_OK),
                    reason="this scree has no programs (imported from the source tree)")
def test_screed_and_screectl_run_from_the_package():
    r = run_entry("screed", "--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("screed "), r.stdout
    r = run_entry("screectl", "--help")
    assert r.returncode == 0, r.stderr
    assert "usage: screectl" in r.stdout


def test_missing_program_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(_cli, "_BIN", str(tmp_path))
    with pytest.raises(SystemExit) as e:
        _cli.screed()
    assert e.value.code == 127
    err = capsys.readouterr().err
    assert str(tmp_path / "screed") in err and "make wheel" in err, err


def test_installed_package_has_its_programs():
    # make test installs the package with its programs; a native extension
    # without them means the build left them out.
    if os.environ.get("SCREE_REQUIRE_NATIVE") == "1" and NATIVE:
        assert os.access(_cli.program_path("screed"), os.X_OK)
        assert os.access(_cli.program_path("screectl"), os.X_OK)
