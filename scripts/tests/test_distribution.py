"""The distributions as a user gets them: built, checked, installed into a new project.

``python -m build`` makes the sdist, then the wheel from the sdist (so the sdist is
known to build); ``twine check --strict`` reads both as PyPI would. The wheel is then
installed into a virtualenv of its own (no test tools, no checkout on the path) and a
project made by ``django-admin startproject`` runs ``check``, ``migrate`` and
``makemigrations --check`` on SQLite with the app installed. Needs ``build``,
``twine`` and ``trove-classifiers`` (the ``dist`` dependency group) and the network
to reach the package index.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from trove_classifiers import classifiers as known_classifiers

REPO = Path(__file__).resolve().parents[2]


def package_version() -> str:
    """``__version__`` as written in ``__init__.py``, the one place it is written."""
    tree = ast.parse((REPO / "openai_django_sessions" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "__version__":
            return str(ast.literal_eval(node.value))
    raise AssertionError("__version__ is not assigned in openai_django_sessions/__init__.py")


def run(*args: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, env=clean_env()
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def clean_env() -> dict[str, str]:
    # Nothing of the test run leaks in: no settings module, no checkout on the path.
    return {
        key: value
        for key, value in os.environ.items()
        if key not in {"DJANGO_SETTINGS_MODULE", "PYTHONPATH", "VIRTUAL_ENV"}
    }


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sdist and the wheel, built from a copy of this checkout.

    The copy leaves out what a build or a test run left behind: setuptools adds the
    files listed in a stale ``*.egg-info/SOURCES.txt`` to the sdist, so a file that
    MANIFEST.in forgot would still ship when built in place.
    """
    source = tmp_path_factory.mktemp("source") / "checkout"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git", "*.egg-info", "build", "dist", "site", ".venv*", "__pycache__", ".*_cache"
        ),
    )
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", out, source)
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return sdist, wheel


def wheel_names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def sdist_names(sdist: Path) -> list[str]:
    with tarfile.open(sdist) as archive:
        return [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]


def wheel_metadata(wheel: Path) -> Parser:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return Parser().parsestr(archive.read(name).decode())


def test_twine_check_strict_passes_on_the_sdist_and_the_wheel(dists: tuple[Path, Path]) -> None:
    run(sys.executable, "-m", "twine", "check", "--strict", *dists)


def test_the_license_ships_in_the_sdist_and_the_wheel(dists: tuple[Path, Path]) -> None:
    sdist, wheel = dists

    assert "LICENSE" in sdist_names(sdist)
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in wheel_names(wheel))
    metadata = wheel_metadata(wheel)
    assert metadata["License-Expression"] == "MIT"
    assert metadata["License-File"] == "LICENSE"


def test_the_distributions_carry_the_version_written_in_the_package(
    dists: tuple[Path, Path],
) -> None:
    sdist, wheel = dists
    version = package_version()

    assert sdist.name == f"openai_django_sessions-{version}.tar.gz"
    assert wheel_metadata(wheel)["Version"] == version


def test_every_classifier_is_one_the_package_index_accepts(dists: tuple[Path, Path]) -> None:
    classifiers = wheel_metadata(dists[1]).get_all("Classifier") or []

    assert [name for name in classifiers if name not in known_classifiers] == []
    assert "License :: OSI Approved :: MIT License" not in classifiers  # the SPDX string says it


def test_the_wheel_publishes_no_development_tools(dists: tuple[Path, Path]) -> None:
    metadata = wheel_metadata(dists[1])

    assert metadata.get_all("Provides-Extra") == ["postgres", "mysql"]
    requirements = " ".join(metadata.get_all("Requires-Dist") or [])
    for tool in ("pytest", "ruff", "mypy", "playwright", "uvicorn", "build", "twine"):
        assert tool not in requirements, tool
    assert metadata["Requires-Python"] == ">=3.11"


def test_the_wheel_ships_the_templates_migrations_and_compiled_translations(
    dists: tuple[Path, Path],
) -> None:
    names = wheel_names(dists[1])

    for shipped in (
        "openai_django_sessions/py.typed",
        "openai_django_sessions/locale/fr/LC_MESSAGES/django.mo",
        "openai_django_sessions/locale/fr/LC_MESSAGES/django.po",
        "openai_django_sessions/migrations/0001_initial.py",
        "openai_django_sessions/templates/admin/openai_django_sessions/agentsession/change_form.html",
    ):
        assert shipped in names, shipped
    assert not [name for name in names if name.startswith("tests/")]


def test_the_sdist_carries_the_whole_test_suite_the_docs_and_the_changelog(
    dists: tuple[Path, Path],
) -> None:
    shipped = set(sdist_names(dists[0]))
    suite = {
        path.relative_to(REPO).as_posix()
        for folder in ("tests", "docs")
        for path in (REPO / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".md")
    }

    assert suite - shipped == set()
    assert {"CHANGELOG.md", "README.md", "pyproject.toml", "MANIFEST.in", "mkdocs.yml"} <= shipped
    assert not [name for name in shipped if "__pycache__" in name or ".sqlite3" in name]


def test_the_test_suite_runs_from_the_unpacked_sdist(
    dists: tuple[Path, Path], tmp_path: Path
) -> None:
    # A sample of the suite (the public API, the catalogues, every code block of the
    # README and docs/), on SQLite, with this interpreter's test tools: its settings,
    # fixtures, pages and package resolve from the sdist alone.
    with tarfile.open(dists[0]) as archive:
        archive.extractall(tmp_path, filter="data")
    (unpacked,) = tmp_path.iterdir()
    env = clean_env() | {"TEST_DB": "sqlite", "TEST_DB_NAME": "ods_sdist"}

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_public_api.py",
            "tests/test_translations.py",
            "tests/test_docs.py",
        ],
        cwd=unpacked,
        capture_output=True,
        text=True,
        env=env,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "skipped" not in done.stdout, done.stdout


def test_the_wheel_installs_into_a_new_project_that_checks_and_migrates(
    dists: tuple[Path, Path], tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "--disable-pip-version-check", "-q", dists[1])
    run(venv / "bin" / "django-admin", "startproject", "newsite", cwd=tmp_path)
    project = tmp_path / "newsite"
    settings = project / "newsite" / "settings.py"
    text = settings.read_text()
    settings.write_text(
        text.replace("INSTALLED_APPS = [", 'INSTALLED_APPS = [\n    "openai_django_sessions",', 1)
    )

    run(python, "manage.py", "check", "--fail-level", "ERROR", cwd=project)
    migrated = run(python, "manage.py", "migrate", "--no-input", cwd=project)
    run(python, "manage.py", "makemigrations", "--check", "--dry-run", cwd=project)

    assert "Applying openai_django_sessions.0001_initial... OK" in migrated
    shown = run(python, "manage.py", "agent_sessions", "list", cwd=project)
    assert shown.strip() == "No sessions."


def test_the_oldest_setuptools_the_build_allows_builds_the_same_wheel(
    dists: tuple[Path, Path], tmp_path: Path
) -> None:
    """``requires = ["setuptools>=77"]``: the floor itself builds the same files and
    metadata fields (77 is the first to read ``license`` as an SPDX expression)."""
    _, wheel = dists
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", "setuptools==77.0.1", "build")
    source = tmp_path / "checkout"
    with tarfile.open(dists[0]) as archive:
        archive.extractall(tmp_path, filter="data")
    (unpacked,) = [path for path in tmp_path.iterdir() if path.name.startswith("openai_django")]
    unpacked.rename(source)
    out = tmp_path / "dist"
    run(python, "-m", "build", "--wheel", "--no-isolation", "--outdir", out, source)
    (oldest,) = out.glob("*.whl")

    assert oldest.name == wheel.name
    assert wheel_names(oldest) == wheel_names(wheel)
    fields = ("Name", "Version", "License-Expression", "License-File", "Requires-Dist")
    for field in fields:
        assert wheel_metadata(oldest).get_all(field) == wheel_metadata(wheel).get_all(field), field
