"""The domain modules must stay usable without Dagster (e.g. in a model-serving process)."""

import pkgutil
import subprocess
import sys

import ml_platform.core


def test_core_modules_the_cli_and_the_model_loader_do_not_import_dagster() -> None:
    modules = [f"ml_platform.core.{m.name}" for m in pkgutil.iter_modules(ml_platform.core.__path__)]
    modules.append("ml_platform.cli")  # the command line starts without Dagster's import cost
    assert "ml_platform.core.registry" in modules
    code = "; ".join(f"import {m}" for m in modules) + (
        "; from ml_platform import load_production_model; import sys; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
