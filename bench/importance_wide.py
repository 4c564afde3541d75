"""Permutation importance on a wide file: the bounded evaluate step against the code before it.

    .venv/bin/python bench/importance_wide.py                      # 400 rows x 10,027 columns
    .venv/bin/python bench/importance_wide.py --columns 3000 --before-timeout 60

The file is the shape that ran for over 900 s in the field (issue 12, "Bounds"): 400 rows and
10,027 columns (10,021 numeric and 3 categorical features, the target, 2 identifiers that are
dropped); the label depends on 3 of the features. An L1-penalised logistic regression is trained by the train
step and scored through its ONNX graph, as in the pipeline.

- after: ``evaluate_model`` (the evaluate step) with the default ``importance`` settings, timed
  whole and for the importance alone; its ``importance_bounds`` record is printed.
- before: the previous implementation (scikit-learn's ``permutation_importance`` over every
  column, through an estimator wrapper), run in a child process that is stopped after
  ``--before-timeout`` seconds; if it does not finish, its time is estimated from its measured
  cost per permuted column (a table copy, the column shuffle and one graph run over the whole
  table, repeated for every column and repeat), which is what scikit-learn does per column.

Prints the ratio before / after (a lower bound from the timeout, and the estimate). Then the
same comparison on the built-in data at `make run` size (20,000 rows, 24 features, the default
HistGradientBoosting), where both finish: their numbers must be equal, and the ratio is measured.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# L1-penalised logistic regression: with 280 training rows and 10,000 columns an L2 one learns noise
# (test ROC AUC 0.55), this one finds the informative columns, as a user would configure it.
FAMILY, PARAMS = "logistic_regression", {"solver": "liblinear", "l1_ratio": 1.0, "C": 0.2}
INFORMATIVE = ("f3", "f17", "segment")


def wide_table(rows: int, columns: int, seed: int = 0) -> pd.DataFrame:
    """``columns`` columns in all: ``columns - 6`` numeric features, 3 categorical ones, the target
    ``y`` and 2 identifiers (``row_id``, ``name``); ``y`` depends on f3, f17 and segment."""
    rng = np.random.default_rng(seed)
    numeric = columns - 6
    values = rng.normal(size=(rows, numeric)).astype(np.float32)
    frame = pd.DataFrame(values, columns=[f"f{i}" for i in range(numeric)])
    extra = pd.DataFrame({
        "segment": rng.choice(["a", "b", "c"], size=rows),
        "region": rng.choice(["north", "south", "east", "west"], size=rows),
        "plan": rng.choice(["basic", "plus"], size=rows),
        "row_id": np.arange(rows),
        "name": [f"customer-{i}" for i in range(rows)],
    })
    logit = 3.0 * values[:, 3] - 2.0 * values[:, 17] + 2.5 * (extra["segment"] == "a").to_numpy()
    extra["y"] = (logit + 0.5 * rng.normal(size=rows) > 0.8).astype(int)
    return pd.concat([frame, extra], axis=1)


def build(rows: int, columns: int):
    from tollgate.serving.runtime import OnnxModel
    from tollgate.steps.candidates import CandidateSpec
    from tollgate.steps.preprocess import build_feature_spec, split_dataset
    from tollgate.steps.train import train_candidate

    frame = wide_table(rows, columns)
    spec = build_feature_spec(frame, "y", 1, ["row_id", "name"], None)
    splits = split_dataset(frame, spec, 0.3, 0.2, 42)
    trained = train_candidate(splits.train, splits.validation,
                              CandidateSpec("logreg", FAMILY, PARAMS),
                              spec)
    return OnnxModel(trained.onnx, spec.schema), splits.test, spec.columns


def legacy_cost_per_permutation(model, test: pd.DataFrame, columns: list[str], samples: int = 3) -> float:
    """Seconds of one of scikit-learn's permuted scorings on this table: X.copy(), one column
    shuffled into it, predict_proba over the whole table (then the AUC, negligible)."""
    from threadpoolctl import threadpool_limits

    table = test[columns]
    rng = np.random.default_rng(0)
    timings = []
    with threadpool_limits(limits=1):
        for i in range(samples):
            started = time.perf_counter()
            permuted = table.copy()
            column = permuted.iloc[rng.permutation(len(table)), i]
            column.index = permuted.index
            permuted[permuted.columns[i]] = column
            model.predict_proba(permuted)
            timings.append(time.perf_counter() - started)
    return float(np.median(timings))


def legacy_top(model, test: pd.DataFrame, columns: list[str]) -> list[dict]:
    """The implementation before the bounds (main at 00340c2): scikit-learn's permutation_importance
    over every column, 3 repeats, at most 2,000 rows; its top 10, as it reported them."""
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.inspection import permutation_importance
    from threadpoolctl import threadpool_limits

    from tollgate.steps.preprocess import LABEL

    class GraphEstimator(ClassifierMixin, BaseEstimator):
        def __init__(self, model=None):
            self.model = model

        def fit(self, X, y=None):
            raise NotImplementedError

        def __sklearn_is_fitted__(self):
            return True

        @property
        def classes_(self):
            return np.arange(2)

        def predict_proba(self, X):
            return np.asarray(self.model.predict_proba(X), dtype=np.float64)

    sample = test.sample(n=min(len(test), 2000), random_state=0)
    with threadpool_limits(limits=1):
        result = permutation_importance(GraphEstimator(model), sample[columns], sample[LABEL].to_numpy(),
                                        scoring="roc_auc", n_repeats=3, random_state=0)
    order = np.argsort(-result.importances_mean)[:10]
    return [{"feature": columns[i], "importance": float(result.importances_mean[i]),
             "std": float(result.importances_std[i])} for i in order]


def builtin_comparison() -> None:
    """Before and after on the default data, where both finish."""
    from tollgate.config import load_config
    from tollgate.data.builtin import generate_applicants
    from tollgate.serving.runtime import OnnxModel
    from tollgate.steps.candidates import CandidateSpec
    from tollgate.steps.evaluate import top_feature_importance
    from tollgate.steps.preprocess import build_feature_spec, split_dataset
    from tollgate.steps.train import train_candidate

    config = load_config(None, {})
    frame = generate_applicants(rows=20_000, seed=7)
    spec = build_feature_spec(frame, config.data.target, config.data.positive_label, config.data.drop,
                              config.data.date_column)
    splits = split_dataset(frame, spec, config.split.test_size, config.split.validation_size, config.split.seed)
    trained = train_candidate(splits.train, splits.validation,
                              CandidateSpec("hgb", "hist_gradient_boosting", {"max_iter": 100, "random_state": 42}), spec)
    model = OnnxModel(trained.onnx, spec.schema)
    started = time.perf_counter()
    before = legacy_top(model, splits.test, spec.columns)
    before_seconds = time.perf_counter() - started
    after, bounds = top_feature_importance(model, splits.test, spec.columns)
    same = [(a.feature, round(a.importance, 12)) for a in after] == \
        [(b["feature"], round(b["importance"], 12)) for b in before]
    print(f"built-in data ({len(splits.test)} test rows, {len(spec.columns)} features, HistGradientBoosting): "
          f"before {before_seconds:.2f} s, after {bounds.seconds:.2f} s "
          f"(ratio {before_seconds / bounds.seconds:.1f}x); same top 10 and numbers: {same}")


def _run_legacy(rows: int, columns: int, done) -> None:
    model, test, names = build(rows, columns)
    done.put("started")  # the parent's clock starts here, after training
    started = time.perf_counter()
    legacy_top(model, test, names)
    done.put(time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--columns", type=int, default=10_027, help="columns in the file (features + 3)")
    parser.add_argument("--before-timeout", type=float, default=120.0,
                        help="seconds the previous implementation may run before it is stopped")
    parser.add_argument("--skip-builtin", action="store_true", help="only the wide file")
    args = parser.parse_args()

    from tollgate.steps.evaluate import evaluate_model, top_feature_importance

    started = time.perf_counter()
    model, test, columns = build(args.rows, args.columns)
    print(f"wide file: {args.rows} rows x {args.columns} columns, {len(columns)} features, "
          f"{len(test)} test rows; trained and exported in {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    evaluation = evaluate_model(model, test, columns)
    after_evaluate = time.perf_counter() - started
    bounds = evaluation["importance_bounds"]
    top = [item.feature for item in evaluation["importance"]]
    print(f"after: evaluate_model {after_evaluate:.1f} s, of which importance {bounds.seconds:.1f} s; "
          f"bounds {bounds.to_dict()}")
    print(f"after: top features {top[:5]}; informative {list(INFORMATIVE)} found: "
          f"{[name for name in INFORMATIVE if name in top]}")
    started = time.perf_counter()
    again, _ = top_feature_importance(model, test, columns)
    print(f"after: a second run is identical: {again == evaluation['importance']} "
          f"({time.perf_counter() - started:.1f} s)")

    unit = legacy_cost_per_permutation(model, test, columns)
    estimate = unit * (len(columns) * 3 + 1)
    print(f"before: {unit:.2f} s per permuted scoring x {len(columns)} columns x 3 repeats "
          f"= about {estimate:,.0f} s ({estimate / 3600:.1f} h) estimated")

    context = multiprocessing.get_context("spawn")
    done = context.Queue()
    child = context.Process(target=_run_legacy, args=(args.rows, args.columns, done))
    child.start()
    assert done.get(timeout=900) == "started"
    started = time.perf_counter()
    child.join(args.before_timeout)
    finished = not child.is_alive()
    if not finished:
        child.terminate()
        child.join()
    elapsed = time.perf_counter() - started
    if finished:
        before = done.get(timeout=10)
        print(f"before: finished in {before:.1f} s (measured)")
        print(f"ratio before / after importance: {before / bounds['seconds']:.1f}x (measured)")
    else:
        print(f"before: not finished after {elapsed:.0f} s (stopped)")
        print(f"ratio before / after importance: > {args.before_timeout / bounds['seconds']:.1f}x (timeout), "
              f"about {estimate / bounds['seconds']:,.0f}x (estimate)")
    if not args.skip_builtin:
        builtin_comparison()


if __name__ == "__main__":
    main()
