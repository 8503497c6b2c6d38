"""``manage.py check --deploy`` is clean with the production settings documented in
deploy/env.example (given the long random SECRET_KEY its comment says to generate)."""

import os
import subprocess
import sys

from bench.env import ROOT

from .servers import documented_env


def _check_deploy(env):
    base = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "DATABASE_URL", "REDIS_URL", "SECRET_KEY"}}
    return subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                          env={**base, **env}, capture_output=True, text=True, timeout=120)  # fmt: skip


def test_check_deploy_is_clean_with_the_documented_production_settings(tmp_path):
    result = _check_deploy(documented_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (" in result.stdout


def test_check_deploy_catches_the_placeholder_secret(tmp_path):
    result = _check_deploy(documented_env(tmp_path, SECRET_KEY="replace-with-a-long-random-secret"))
    assert result.returncode != 0
    assert "security.W009" in result.stderr + result.stdout
