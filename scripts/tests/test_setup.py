"""scripts/setup.sh: what the two commands do on a fresh machine.

System packages and servers are faked with commands earlier on ``PATH`` (``dpkg-query``
reading a package list, ``id``, ``apt-get``, ``pg_isready``...), so no test installs or
removes anything on this machine; virtualenvs are built for real with pip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / "scripts" / "setup.sh"

SHIMS = {
    # Installed when named in $FAKE_INSTALLED, one package a line.
    "dpkg-query": """
pkg="${@: -1}"
grep -qx "$pkg" "$FAKE_INSTALLED" && printf installed || exit 1
""",
    "id": 'echo "$FAKE_UID"',
    # Logs its arguments; "install" adds the packages to the list unless FAKE_APT_FAIL is set.
    "apt-get": """
echo "apt-get $*" >>"$FAKE_LOG"
[ "$1" = install ] || exit 0
if [ -n "${FAKE_APT_FAIL:-}" ]; then echo "E: Unable to locate package $3" >&2; exit 100; fi
shift 3
printf '%s\\n' "$@" >>"$FAKE_INSTALLED"
""",
    "pg_isready": '[ -f "$FAKE_STARTED" ]',
    "pg_ctlcluster": 'echo "pg_ctlcluster $*" >>"$FAKE_LOG"; touch "$FAKE_STARTED"',
}


def machine(tmp_path: Path, *, uid: int, installed: list[str]) -> dict[str, str]:
    """The environment of a fake machine: shims first on PATH, a package list."""
    shims = tmp_path / "shims"
    shims.mkdir()
    for name, body in SHIMS.items():
        (shims / name).write_text("#!/usr/bin/env bash\n" + body)
        (shims / name).chmod(0o755)
    (tmp_path / "installed").write_text("".join(f"{name}\n" for name in installed))
    env = dict(os.environ)
    env.update(
        PATH=f"{shims}:{env['PATH']}",
        FAKE_INSTALLED=str(tmp_path / "installed"),
        FAKE_UID=str(uid),
        FAKE_LOG=str(tmp_path / "log"),
        FAKE_STARTED=str(tmp_path / "started"),
    )
    return env


def run_setup(script: str, env: dict[str, str], cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", f"set -euo pipefail; source {SETUP}; {script}"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def log(tmp_path: Path) -> list[str]:
    path = tmp_path / "log"
    return path.read_text().splitlines() if path.exists() else []


def copy_of_scripts(tmp_path: Path) -> Path:
    """A checkout with the scripts and pyproject.toml only: enough to see what they create."""
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO / "scripts", checkout / "scripts")
    shutil.copy(REPO / "pyproject.toml", checkout)
    return checkout


def test_present_packages_need_nothing(tmp_path: Path) -> None:
    env = machine(tmp_path, uid=1000, installed=["libmariadb-dev", "pkg-config"])
    result = run_setup("need_system_packages libmariadb-dev pkg-config", env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert log(tmp_path) == []


def test_root_installs_only_the_missing_packages_after_apt_get_update(tmp_path: Path) -> None:
    env = machine(tmp_path, uid=0, installed=["pkg-config"])
    result = run_setup("need_system_packages libmariadb-dev pkg-config chromium", env)
    assert result.returncode == 0, result.stderr
    assert log(tmp_path) == ["apt-get update -q", "apt-get install -y -q libmariadb-dev chromium"]
    assert "Installing system packages: libmariadb-dev chromium" in result.stderr
    assert (tmp_path / "installed").read_text().split() == [
        "pkg-config",
        "libmariadb-dev",
        "chromium",
    ]


def test_a_failed_apt_get_install_fails_with_its_output(tmp_path: Path) -> None:
    env = machine(tmp_path, uid=0, installed=[])
    env["FAKE_APT_FAIL"] = "1"
    result = run_setup("need_system_packages chromium", env)
    assert result.returncode == 1
    assert "E: Unable to locate package" in result.stderr
    assert "Installing chromium failed" in result.stderr


def test_test_command_without_root_stops_before_creating_anything(tmp_path: Path) -> None:
    env = machine(tmp_path, uid=1000, installed=["pkg-config"])
    env["LEGS"] = "django6"
    checkout = copy_of_scripts(tmp_path)
    before = sorted(path.name for path in checkout.iterdir())
    result = subprocess.run(
        ["bash", "scripts/test"], env=env, cwd=checkout, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "Missing system packages: chromium gettext libmariadb-dev." in result.stderr
    assert (
        "    sudo apt-get update && sudo apt-get install -y chromium gettext libmariadb-dev\n"
        in result.stderr
    )
    assert sorted(path.name for path in checkout.iterdir()) == before  # no .venv-django6
    assert log(tmp_path) == []


def test_a_leg_without_the_example_needs_no_browser(tmp_path: Path) -> None:
    env = machine(tmp_path, uid=1000, installed=[])
    env["LEGS"] = "oldest"
    result = subprocess.run(
        ["bash", "scripts/test"],
        env=env,
        cwd=copy_of_scripts(tmp_path),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "sudo apt-get install -y gettext libmariadb-dev pkg-config\n" in result.stderr


def test_a_server_that_is_down_is_started_as_root(tmp_path: Path) -> None:
    env = machine(tmp_path, uid=0, installed=[])
    result = run_setup("start_database_servers postgres sqlite", env)
    assert result.returncode == 0, result.stderr
    assert log(tmp_path) == [
        f"pg_ctlcluster --skip-systemctl-redirect {' '.join(os.listdir('/etc/postgresql'))}"
        " main start"
    ]
    assert (tmp_path / "started").exists()


def test_a_server_is_not_started_without_root(tmp_path: Path) -> None:
    env = machine(tmp_path, uid=1000, installed=[])
    result = run_setup("start_database_servers postgres", env)
    assert result.returncode == 0, result.stderr
    assert log(tmp_path) == []


def test_a_failed_install_leaves_no_virtualenv_and_the_next_run_recovers(tmp_path: Path) -> None:
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    venv = tmp_path / "venv"
    python = sys.executable
    failed = run_setup(f"ensure_venv {venv} {python} ods-no-such-requirement==0.0.1", env)
    assert failed.returncode == 1
    assert "ods-no-such-requirement" in failed.stderr  # pip's own output, shown on failure
    assert "nothing was kept" in failed.stderr
    assert not venv.exists()

    ready = run_setup(f"ensure_venv {venv} {python} pip", env)
    assert ready.returncode == 0, ready.stderr
    assert ready.stderr.splitlines() == [
        f"==> Creating {venv} (Python {sys.version.split()[0]}); "
        "its pip output is shown only if it fails"
    ]
    assert [path.name for path in venv.glob(".installed-*")]
    again = run_setup(f"ensure_venv {venv} {python} pip", env)
    assert again.returncode == 0 and again.stderr == ""  # ready: not rebuilt
