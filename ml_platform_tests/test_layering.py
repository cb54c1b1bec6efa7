"""The domain packages stay usable without Dagster (e.g. in a model-serving process)."""

import pkgutil
import subprocess
import sys

import ml_platform

DOMAIN_PACKAGES = ("data", "model", "monitoring", "alerting")


def domain_modules() -> list[str]:
    modules = []
    for package in DOMAIN_PACKAGES:
        path = [f"{ml_platform.__path__[0]}/{package}"]
        modules += [f"ml_platform.{package}.{m.name}" for m in pkgutil.iter_modules(path)]
    return modules


def test_domain_modules_the_cli_and_the_model_loader_do_not_import_dagster() -> None:
    modules = domain_modules()
    assert {"ml_platform.model.registry", "ml_platform.data.validation", "ml_platform.alerting.dispatch"} <= set(modules)
    # The declarations are read (and written) without Dagster too: the command line starts fast.
    modules += ["ml_platform.paths", "ml_platform.declaration", "ml_platform.scaffold", "ml_platform.cli"]
    code = "; ".join(f"import {m}" for m in modules) + (
        "; from ml_platform import load_production_model; import sys; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_command_line_starts_without_pandas() -> None:
    code = "import sys, ml_platform.cli; print('pandas' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
