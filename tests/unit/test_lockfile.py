"""requirements.lock: every Python package the project and its tests need, pinned and hashed,
within what pyproject.toml allows; `make setup` installs from it with hashes required; and the
environment the tests run in is the locked one."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\]+) \\$")


def _locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of every package in the lock."""
    packages: dict[str, tuple[str, list[str]]] = {}
    current: str | None = None
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if match := PIN.match(line):
            current = canonicalize_name(match.group(1))
            packages[current] = (match.group(2), [])
        elif line.strip().startswith("--hash=sha256:") and current is not None:
            packages[current][1].append(line.strip().removeprefix("--hash=sha256:").rstrip(" \\"))
        elif line and not line.startswith((" ", "#")):
            raise AssertionError(f"requirements.lock: a line that is not a hashed pin: {line!r}")
    return packages


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["dev"]]]


def test_every_declared_dependency_is_locked_within_its_range_with_hashes() -> None:
    locked = _locked()
    assert locked, "requirements.lock is empty"
    for name, (_version, hashes) in locked.items():
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name
    for requirement in _declared():
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement} is not in requirements.lock: run make lock"
        version = locked[name][0]
        assert requirement.specifier.contains(version, prereleases=True), f"{name}=={version} outside {requirement}"


def test_make_setup_installs_the_lock_with_hashes_required() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install --quiet --disable-pip-version-check --require-hashes -r $(LOCK)" in makefile
    assert "pip install --quiet --disable-pip-version-check --no-deps -e ." in makefile
    assert re.search(r"^\$\(PY_STAMP\): pyproject\.toml \$\(LOCK\)", makefile, re.M), "a new lock reinstalls"


def test_the_tests_run_on_the_locked_versions() -> None:
    wrong = {}
    for name, (version, _hashes) in _locked().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            wrong[name] = (version, installed)
    assert not wrong, f"locked vs installed (make setup installs the lock): {wrong}"
