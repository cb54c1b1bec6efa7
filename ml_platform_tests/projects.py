"""A dg project of one's own, in a temporary folder: models declared in YAML, loaded by
`load_from_defs_folder` as the shipped project loads its own."""

from __future__ import annotations

import importlib
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from ml_platform.declaration import COMPONENT_TYPE

DEFINITIONS = '''\
from pathlib import Path

import dagster as dg

from ml_platform.definitions import project_definitions


@dg.definitions
def defs() -> dg.Definitions:
    return project_definitions(Path(__file__).resolve().parent.parent)
'''


@dataclass(frozen=True)
class Project:
    root: Path
    package: str

    @property
    def defs_dir(self) -> Path:
        return self.root / self.package / "defs"

    @property
    def module(self) -> str:
        return f"{self.package}.definitions"

    def declare(self, name: str, attributes: dict[str, Any] | str) -> Path:
        """Write defs/<name>/defs.yaml (attributes as a dict, or the whole file as text)."""
        text = attributes if isinstance(attributes, str) else yaml.safe_dump({"type": COMPONENT_TYPE, "attributes": attributes})
        path = self.defs_dir / name / "defs.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def load(self) -> dg.Definitions:
        """The project's Definitions, loaded in this process (fresh modules each time)."""
        for name in [m for m in sys.modules if m == self.package or m.startswith(f"{self.package}.")]:
            del sys.modules[name]
        if str(self.root) not in sys.path:
            sys.path.insert(0, str(self.root))
        module = importlib.import_module(self.module)
        return module.defs()

    def env(self) -> dict[str, str]:
        """Environment for a subprocess (dagster, dg) that imports this project."""
        import os

        return {**os.environ, "PYTHONPATH": os.pathsep.join([str(self.root), os.environ.get("PYTHONPATH", "")])}


def make_project(root: Path, models: dict[str, dict[str, Any] | str] | None = None) -> Project:
    package = f"proj_{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "{package}"\nversion = "0.0.1"\n\n'
        f'[tool.dg]\ndirectory_type = "project"\n\n[tool.dg.project]\nroot_module = "{package}"\n'
        f'code_location_target_module = "{package}.definitions"\nregistry_modules = ["ml_platform"]\n\n'
        '[tool.dg.cli]\nsuppress_warnings = ["project_and_activated_venv_mismatch"]\n'
    )
    (root / package / "defs").mkdir(parents=True)
    (root / package / "__init__.py").write_text("")
    (root / package / "defs" / "__init__.py").write_text("")
    (root / package / "definitions.py").write_text(DEFINITIONS)
    project = Project(root, package)
    for name, attributes in (models or {}).items():
        project.declare(name, attributes)
    return project
