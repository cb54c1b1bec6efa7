"""Reading declarations without Dagster: names, files, defaults, the one-model default."""

from pathlib import Path

import pytest

from ml_platform.declaration import (
    DeclarationError,
    ModelDeclaration,
    declared_model_names,
    read_declarations,
    resolve_model_name,
)
from ml_platform.scaffold import declaration_yaml


def defs_with(tmp_path: Path, **files: str) -> Path:
    defs = tmp_path / "pkg" / "defs"
    for name, text in files.items():
        (defs / name).mkdir(parents=True)
        (defs / name / "defs.yaml").write_text(text)
    return defs


def test_only_model_pipeline_declarations_count_and_they_come_in_name_order(tmp_path: Path) -> None:
    defs = defs_with(tmp_path, zeta=declaration_yaml("zeta"), alpha=declaration_yaml("alpha"), other="type: dagster.DefsFolderComponent\n")
    assert declared_model_names(defs) == ["alpha", "zeta"]
    assert [m.name for m in read_declarations(defs)] == ["alpha", "zeta"]
    assert all(m.project_root == tmp_path and m.declaration == ModelDeclaration() for m in read_declarations(defs))


def test_a_declaration_that_is_not_yaml_is_named_never_skipped(tmp_path: Path) -> None:
    defs = defs_with(tmp_path, churn=declaration_yaml("churn"), broken="type: [unclosed\n")
    with pytest.raises(DeclarationError, match=r"broken/defs.yaml: cannot read: while parsing a flow sequence"):
        declared_model_names(defs)


def test_the_model_defaults_to_the_only_one_and_several_must_be_named(tmp_path: Path) -> None:
    one = defs_with(tmp_path / "one", churn=declaration_yaml("churn"))
    assert resolve_model_name(None, one) == "churn" and resolve_model_name("churn", one) == "churn"
    with pytest.raises(DeclarationError, match=r"no model 'fraud' is declared in .*; declared: churn"):
        resolve_model_name("fraud", one)
    # A serving process loading a model by name need not carry its declaration.
    assert resolve_model_name("fraud", one, declared_only=False) == "fraud"
    two = defs_with(tmp_path / "two", churn=declaration_yaml("churn"), fraud=declaration_yaml("fraud"))
    with pytest.raises(DeclarationError, match=r"several models are declared \(churn, fraud\): name one \(on the command line: --model NAME\)"):
        resolve_model_name(None, two)
    with pytest.raises(DeclarationError, match="no model is declared in"):
        resolve_model_name(None, tmp_path / "empty")


def test_the_shipped_project_declares_the_breast_cancer_and_churn_models() -> None:
    model, churn = read_declarations()
    assert model.name == "breast_cancer" and model.declaration.source.kind == "bundled"
    assert churn.name == "churn" and churn.declaration.source.dataset == "churn"
    assert churn.declaration.source.categorical and churn.declaration.source.impute
    assert model.declaration.source.classes is None  # the bundled source declares its own (0, 1)
    assert model.declaration.checks.accuracy.min_accuracy == 0.70 and model.declaration.schedules.retrain.cron == "0 2 * * *"


DRIFT_DECLARATION = """\
type: ml_platform.ModelPipeline
attributes:
  source: {{kind: synthetic, synthetic: {{features: 3}}}}
  checks:
    data_drift: {data_drift}
"""


@pytest.mark.parametrize(("data_drift", "message"), [
    ("{features: {f1: {method: [ks]}, f7: {}}}",
     r"attributes: checks.data_drift.features names feature\(s\) the source does not have: \['f7'\] \(features: f0, f1, f2\)"),
    ("{method: [psi, psi]}", r"attributes.checks.data_drift.method: method lists a statistic twice: \['psi', 'psi'\]"),
    ("{method: [chi2]}", r"attributes.checks.data_drift.method.0: Input should be 'psi', 'ks' or 'wasserstein'"),
    ("{ks_threshold: 1.5}", r"attributes.checks.data_drift.ks_threshold: Input should be less than or equal to 1"),
    ("{features: {f1: {wasserstein: 0.2}}}", r"attributes.checks.data_drift.features.f1.wasserstein: unknown field 'wasserstein'"),
])
def test_drift_rules_are_checked_when_the_declaration_loads(tmp_path: Path, data_drift: str, message: str) -> None:
    defs = defs_with(tmp_path, synth=DRIFT_DECLARATION.format(data_drift=data_drift))
    with pytest.raises(DeclarationError, match=message):
        read_declarations(defs)


def test_drift_rules_default_to_psi_or_wasserstein_on_any_feature(tmp_path: Path) -> None:
    defs = defs_with(tmp_path, synth=DRIFT_DECLARATION.format(data_drift="{features: {f1: {method: [ks]}}}"))
    declared = read_declarations(defs)[0].declaration.checks.data_drift
    assert declared.method == ["psi", "wasserstein"] and declared.drift_share is None
    assert declared.features["f1"].method == ["ks"] and declared.features["f1"].ks_threshold is None
