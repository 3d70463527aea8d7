"""The command line itself: fast help without heavy imports, validate, version."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "NO_COLOR": "1", "COLUMNS": "200"}


def _cli(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "compressor", *args], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=120)


def test_help_lists_the_commands():
    r = _cli("--help")  # fast because no heavy library is imported: see the next tests (no timing asserted here)
    assert r.returncode == 0, r.stderr
    for word in ("validate", "run", "version", "--debug"):
        assert word in r.stdout
    assert r.stderr == ""


def test_no_arguments_prints_help():
    r = _cli()
    assert "validate" in (r.stdout + r.stderr) and "Traceback" not in r.stderr


def test_importing_the_cli_does_not_import_torch():
    code = "import compressor.cli, sys; print('torch' in sys.modules, 'transformers' in sys.modules, 'onnxruntime' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False", "False"]


def test_validate_does_not_import_torch():
    code = ("import sys; from compressor.cli import app\n"
            "try:\n    app(['validate', 'recipes/quickstart.yaml'])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("False")


def test_validate_quickstart_prints_ok():
    r = _cli("validate", "recipes/quickstart.yaml")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("recipes/quickstart.yaml: OK: 'quickstart'")
    assert "finetune → export → quantize" in r.stdout


def test_validate_every_shipped_recipe():
    for recipe in sorted((ROOT / "recipes").glob("*.yaml")):
        r = _cli("validate", str(recipe.relative_to(ROOT)))
        assert r.returncode == 0 and ": OK: " in r.stdout, (recipe.name, r.stderr)


def test_validate_with_set_override():
    r = _cli("validate", "recipes/quickstart.yaml", "--set", "stages=[]", "--set", "name=other")
    assert r.returncode == 0, r.stderr
    assert "'other'" in r.stdout and "no stages" in r.stdout


def test_version():
    from compressor import __version__

    r = _cli("version")
    assert r.returncode == 0 and r.stdout.strip() == __version__


def test_unknown_command_is_a_usage_error():
    r = _cli("frobnicate")
    assert r.returncode == 2 and "Traceback" not in r.stderr


@pytest.mark.parametrize("recipe", sorted(p.name for p in (ROOT / "recipes").glob("*.yaml")))
def test_every_shipped_recipe_validates_and_plans(recipe):
    """The recipes in recipes/ are the documentation: each must validate and get a plan (no model needed)."""
    r = _cli("validate", f"recipes/{recipe}")
    assert r.returncode == 0 and ": OK: " in r.stdout, r.stderr
    r = _cli("plan", f"recipes/{recipe}")
    assert r.returncode == 0 and "what each stage buys here" in r.stdout, r.stderr
