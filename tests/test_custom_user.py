"""A project whose AUTH_USER_MODEL is its own model migrates and works, on this database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.settings import NAME

ROOT = Path(__file__).resolve().parent.parent


def test_ownership_under_a_custom_user_model() -> None:
    # A process of its own: AUTH_USER_MODEL is read once, when models load.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/custom_user/owned_by_members.py",
            "--ds=tests.settings_custom_user",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=ROOT,
        env={**os.environ, "TEST_DB_NAME": f"{NAME}_cu"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "5 passed" in result.stdout.splitlines()[-1]
