"""The map of the whole platform: every model declared under ml_platform/defs/, plus what serves
them all (the alert sensors, the shared resources, the executor)."""

import gc
from functools import cache
from pathlib import Path

# The imports below (scikit-learn, pandas, pyarrow, pandera, the platform) allocate ~2 million
# objects that live as long as the process; the cyclic collector would traverse them again and
# again meanwhile (0.2-0.5 s of a CLI run here). Frozen afterwards: out of its way for good.
import dagster as dg

from ml_platform.orchestration.platform import build_platform_definitions

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def project_definitions(project_root: Path) -> dg.Definitions:
    """Every ModelPipeline declared in a dg project's defs folder, with the platform that serves
    them. A project of your own that declares models uses it the same way as this one."""
    return build_platform_definitions(dg.load_from_defs_folder(path_within_project=project_root))


@dg.definitions
@cache  # Dagster loads the definitions up to six times in one CLI run (~0.3 s each); the YAML is read once per process
def defs() -> dg.Definitions:
    definitions = project_definitions(PROJECT_ROOT)
    # The definitions live as long as the process too. With them frozen, the collector's passes at
    # the exit of a CLI run take 0.2 s instead of 1.0 s (benchmarks/pipeline_benchmark.py).
    gc.freeze()
    return definitions
