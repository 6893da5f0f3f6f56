#!/usr/bin/env python3
"""Set up the project's virtual environment when needed, then run one task.

    python3 tasks.py demo    # the whole job offline, on the bundled sample feeds
    python3 tasks.py test    # the test suite
    python3 tasks.py lint    # ruff and mypy

Only Python 3.11+ is needed. The environment lives in .venv and is
reinstalled only when pyproject.toml or requirements.lock change.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".installed"
LOCK_FILES = ("pyproject.toml", "requirements.lock")


def _venv_python() -> Path:
    sub = "Scripts/python.exe" if os.name == "nt" else "bin/python"
    return VENV / sub


def _fingerprint() -> str:
    digest = hashlib.sha256(sys.version.encode())
    for name in LOCK_FILES:
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def ensure_env() -> Path:
    """Create .venv and install the locked dependencies unless already done."""
    if sys.version_info < (3, 11):
        sys.exit("China to Watch needs Python 3.11 or newer.")

    python = _venv_python()
    if not python.exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)

    wanted = _fingerprint()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return python

    print("installing locked dependencies into .venv ...", flush=True)
    pip = [str(python), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "-r", "requirements.lock"], cwd=ROOT, check=True)
    subprocess.run(
        [*pip, "install", "--no-deps", "-e", "."],
        cwd=ROOT,
        check=True,
    )
    STAMP.write_text(wanted)
    return python


def main(argv: list[str]) -> int:
    task, *rest = argv or ["help"]
    if task not in {"demo", "test", "lint", "shell"}:
        print(__doc__)
        return 0 if task == "help" else 2

    python = str(ensure_env())
    if task == "demo":
        return subprocess.call([python, "-m", "functions.cli", "demo", *rest], cwd=ROOT)
    if task == "test":
        return subprocess.call([python, "-m", "pytest", *rest], cwd=ROOT)
    if task == "lint":
        code = subprocess.call([python, "-m", "ruff", "check", "."], cwd=ROOT)
        return code or subprocess.call(
            [python, "-m", "mypy", "functions", "infra", "bot"], cwd=ROOT
        )
    return subprocess.call([python, *rest], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
