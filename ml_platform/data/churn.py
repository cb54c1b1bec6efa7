"""A synthetic telecom churn table, the second shipped example: mixed types, gaps, no download.

Deterministic (fixed seed): the same 3,000 rows every time, so the example's data fingerprint and
its first model version are stable. The label follows a logistic model of the columns, with
effects of the sizes churn studies report (month-to-month contracts, electronic checks, fibre,
support calls and short tenure raise churn), so a model has something real to learn.

`generate_churn_month(n)` is the data of the n-th month after the training table, as monitoring
would see it: customers drift to month-to-month contracts and electronic checks, a billing
export fault leaves more `total_charges` empty, and the labels have not arrived yet (`churned`
is empty: customers leave weeks later). It is the README's monitoring demo:

    .venv/bin/python -m ml_platform.data.churn --month 2 --out data/churn-month-2.csv

writes the CSV and, beside it, the run config that points the `churn` model's monitoring job at it
(`data/churn-month-2.yaml`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CHURN_SEED = 20_261_201
CHURN_ROWS = 3_000
CHURN_TARGET = "churned"
CHURN_CATEGORICAL = ("contract", "payment_method", "internet_service", "senior_citizen")
CHURN_NUMERIC = ("tenure_months", "monthly_charges", "support_calls", "total_charges")
# Columns with gaps, and the share of rows missing in each (at random, independent of the label).
CHURN_MISSING = {"total_charges": 0.04, "internet_service": 0.03}

_CONTRACTS = {"month-to-month": 1.3, "one_year": 0.0, "two_year": -1.2}
_PAYMENTS = {"electronic_check": 0.6, "mailed_check": 0.0, "bank_transfer": -0.2, "credit_card": -0.25}
_INTERNET = {"fiber_optic": 0.5, "dsl": 0.0, "none": -0.6}


def generate_churn(
    rows: int = CHURN_ROWS, seed: int = CHURN_SEED, contract_shares: tuple[float, float, float] = (0.55, 0.25, 0.20),
    payment_shares: tuple[float, float, float, float] = (0.34, 0.23, 0.22, 0.21),
    missing: dict[str, float] | None = None,
) -> pd.DataFrame:
    """`rows` customers: the columns of CHURN_NUMERIC and CHURN_CATEGORICAL, and `churned` (0/1)."""
    rng = np.random.default_rng(seed)
    contract = rng.choice(list(_CONTRACTS), rows, p=list(contract_shares))
    payment = rng.choice(list(_PAYMENTS), rows, p=list(payment_shares))
    internet = rng.choice(list(_INTERNET), rows, p=[0.44, 0.34, 0.22])
    senior = rng.choice(["no", "yes"], rows, p=[0.84, 0.16])
    # Longer contracts go with longer tenure; tenure is capped at 72 months as in telecom data.
    tenure_scale = np.select([contract == "two_year", contract == "one_year"], [45.0, 30.0], 12.0)
    tenure = np.clip(np.round(rng.exponential(tenure_scale)), 0, 72).astype(np.int64)
    base_charge = np.select([internet == "fiber_optic", internet == "dsl"], [80.0, 55.0], 22.0)
    monthly = np.round(base_charge + rng.normal(0.0, 8.0, rows), 2).clip(18.0, None)
    total = np.round(monthly * tenure * rng.uniform(0.95, 1.05, rows), 2)
    support_calls = rng.poisson(np.where(internet == "fiber_optic", 1.8, 1.0))

    logit = (
        -1.1
        + np.vectorize(_CONTRACTS.get)(contract)
        + np.vectorize(_PAYMENTS.get)(payment)
        + np.vectorize(_INTERNET.get)(internet)
        + 0.35 * (senior == "yes")
        - 0.045 * tenure
        + 0.012 * (monthly - 60.0)
        + 0.35 * support_calls
    )
    churned = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{seed % 1000:03d}-{i:05d}" for i in range(rows)],  # an id: not a feature
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "total_charges": total,
            "support_calls": support_calls,
            "contract": contract,
            "payment_method": payment,
            "internet_service": internet,
            "senior_citizen": senior,
            CHURN_TARGET: churned,
        }
    )
    for column, share in (CHURN_MISSING if missing is None else missing).items():
        gaps = rng.random(rows) < share
        frame[column] = frame[column].mask(gaps)
    return frame


def generate_churn_month(month: int, rows: int = 2_000) -> pd.DataFrame:
    """The `month`-th month after the training table (month >= 1): drifted, gappier, unlabelled."""
    if month < 1:
        raise ValueError(f"month must be >= 1 (month 0 is the training table), got {month}")
    drift = min(month, 4) / 4  # the shift grows for four months, then holds
    contract = (0.55 + 0.30 * drift, 0.25 - 0.15 * drift, 0.20 - 0.15 * drift)
    payment = (0.34 + 0.30 * drift, 0.23 - 0.10 * drift, 0.22 - 0.10 * drift, 0.21 - 0.10 * drift)
    missing = {**CHURN_MISSING, "total_charges": 0.04 + 0.40 * drift}
    frame = generate_churn(rows, CHURN_SEED + month, contract, payment, missing)
    frame[CHURN_TARGET] = pd.NA  # labels arrive weeks later
    return frame


def monitoring_run_config(csv_path: str) -> dict[str, object]:
    """Run config pointing the `churn` model's data source at a CSV of these columns."""
    features = [*CHURN_NUMERIC, *CHURN_CATEGORICAL]
    source = {"kind": "csv", "path": csv_path, "target": CHURN_TARGET, "features": features}
    return {"resources": {"churn_data_source": {"config": source}}}


def main(argv: list[str] | None = None) -> int:
    import argparse
    from pathlib import Path

    import yaml

    parser = argparse.ArgumentParser(description="Write a month of churn data as monitoring would see it (CSV), "
                                     "and the run config that monitors it (YAML, beside it).")
    parser.add_argument("--month", type=int, default=2, help="months after the training table (>= 1)")
    parser.add_argument("--out", required=True, help="the CSV file to write")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    config = out.with_suffix(".yaml")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        generate_churn_month(args.month).to_csv(out, index=False)
        config.write_text(yaml.safe_dump(monitoring_run_config(str(out)), sort_keys=False))
    except (ValueError, OSError) as exc:
        parser.exit(1, f"ml_platform.data.churn: {exc}\n")
    print(f"wrote {out}: month {args.month} after the training table (drifted, no labels yet)")
    print(f"wrote {config}: monitor it with")
    print(f"  DAGSTER_HOME=$PWD/dagster_home .venv/bin/dagster job execute -m ml_platform -j churn_monitoring -c {config}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
