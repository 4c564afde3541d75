"""Accuracy of the ONNX contract against the pre-ONNX pipeline, on built-in data.

    .venv/bin/python bench/onnx_accuracy.py                 # default config, seeds 7 8 9
    .venv/bin/python bench/onnx_accuracy.py --seeds 7 --rows 20000

The pre-ONNX preprocessing (text cast in a FunctionTransformer, SimpleImputer with
missing-value indicators, one-hot with infrequent-category grouping, float64 inputs) is
rebuilt here as the baseline; it cannot be exported, which is why it changed. For every
candidate of the default grid, each side is fitted on the same train split and scored on
the same test split: the baseline with scikit-learn, the new side through its ONNX graph
(what the gate scores and the server serves). Target: the selected model's test ROC AUC
drops by at most 0.002.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_DROP = 0.002


def _text(X):
    frame = pd.DataFrame(X)
    return pd.DataFrame({c: frame[c].astype(str).where(frame[c].notna(), np.nan) for c in frame.columns},
                        index=frame.index)


def baseline_preprocessor(spec, scale: bool):
    """The preprocessing Tollgate used before the ONNX contract (main at fd884c2)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    numeric = [("impute", SimpleImputer(strategy="median", add_indicator=True))]
    if scale:
        numeric.append(("scale", StandardScaler()))
    categorical = Pipeline([
        ("to_text", FunctionTransformer(_text, feature_names_out="one-to-one")),
        ("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
        ("onehot", OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=spec.max_categories,
                                 min_frequency=5, sparse_output=False)),
    ])
    return ColumnTransformer([("numeric", Pipeline(numeric), spec.numeric),
                              ("categorical", categorical, spec.categorical)], verbose_feature_names_out=False)


def compare(seed: int, rows: int) -> list[dict]:
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import Pipeline
    from threadpoolctl import threadpool_limits

    from tollgate.config import load_config
    from tollgate.data.builtin import generate_applicants
    from tollgate.serving.runtime import OnnxModel
    from tollgate.steps.candidates import config_grid, estimator_class
    from tollgate.steps.preprocess import LABEL, build_feature_spec, split_dataset
    from tollgate.steps.train import _NEEDS_SCALING, train_candidate

    config = load_config(None, {})
    data = config.data
    frame = generate_applicants(rows=rows, seed=seed)
    spec = build_feature_spec(frame, data.target, data.positive_label, data.drop, data.date_column,
                              max_categories=config.features.max_categories)
    splits = split_dataset(frame, spec, config.split.test_size, config.split.validation_size, config.split.seed)
    y_test = splits.test[LABEL].to_numpy()
    results = []
    with threadpool_limits(limits=1):
        for candidate in config_grid(config):
            baseline = Pipeline([("preprocess", baseline_preprocessor(spec, candidate.family in _NEEDS_SCALING)),
                                 ("model", estimator_class(candidate.family)(**candidate.params))])
            baseline.fit(splits.train[spec.columns], splits.train[LABEL])
            baseline_validation = roc_auc_score(splits.validation[LABEL],
                                                baseline.predict_proba(splits.validation[spec.columns])[:, 1])
            trained = train_candidate(splits.train, splits.validation, candidate, spec)
            graph = OnnxModel(trained.onnx, spec.schema)
            results.append({
                "seed": seed, "candidate_id": candidate.candidate_id,
                "validation_metrics": trained.validation_metrics, "baseline_validation_roc_auc": baseline_validation,
                "baseline": roc_auc_score(y_test, baseline.predict_proba(splits.test[spec.columns])[:, 1]),
                "onnx": roc_auc_score(y_test, graph.predict_proba(splits.test)[:, 1]),
            })
    # The selected model on each side, by validation ROC AUC as the default config selects.
    metric = config.train.selection_metric  # select's rule: the best validation metric; max keeps the earliest of ties
    new_pick = max(results, key=lambda r: r["validation_metrics"][metric])["candidate_id"]
    old_pick = max(results, key=lambda r: r["baseline_validation_roc_auc"])["candidate_id"]
    for result in results:
        result["selected_onnx"] = result["candidate_id"] == new_pick
        result["selected_baseline"] = result["candidate_id"] == old_pick
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9], help="built-in data seeds")
    parser.add_argument("--rows", type=int, default=20_000, help="built-in rows per seed (the default config's)")
    args = parser.parse_args()
    worst = -1.0
    print(f"{'seed':>4}  {'candidate':<48} {'baseline':>9} {'onnx':>9} {'change':>8}")
    for seed in args.seeds:
        results = compare(seed, args.rows)
        for r in results:
            marks = ("*" if r["selected_baseline"] else " ") + ("*" if r["selected_onnx"] else " ")
            print(f"{seed:>4}  {r['candidate_id']:<48} {r['baseline']:>9.5f} {r['onnx']:>9.5f} "
                  f"{r['onnx'] - r['baseline']:>+8.5f} {marks}")
        old = next(r for r in results if r["selected_baseline"])["baseline"]
        new = next(r for r in results if r["selected_onnx"])["onnx"]
        drop = old - new
        worst = max(worst, drop)
        print(f"      selected model: baseline {old:.5f}, onnx {new:.5f}, drop {drop:+.5f}")
    verdict = "met" if worst <= TARGET_DROP else "MISSED"
    print(f"largest drop of the selected model's test ROC AUC: {worst:+.5f} (target <= {TARGET_DROP}): {verdict}")


if __name__ == "__main__":
    main()
