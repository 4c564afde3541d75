"""The one list of each: metric names, model families, the server's unknown-column policies, and which
metrics are better when lower.

Config validation, the selector, the gate, the run summary, the report and the tests read
these (``tollgate.steps.evaluate`` produces exactly these keys, in this order). Standard
library only: the select and gate tasks import it without paying for pydantic.
"""

from __future__ import annotations

from typing import Literal, get_args

# Metrics of a binary model (tollgate.steps.evaluate.classification_metrics).
BinaryMetric = Literal["roc_auc", "pr_auc", "accuracy", "precision", "recall", "f1", "log_loss", "brier"]
METRIC_NAMES: tuple[str, ...] = get_args(BinaryMetric)
# Metrics of a multiclass model (tollgate.steps.evaluate.multiclass_metrics); gated under gate.multiclass.
MulticlassMetric = Literal["roc_auc_ovr_macro", "roc_auc_ovr_weighted", "f1_macro", "f1_weighted", "accuracy",
                           "precision_macro", "recall_macro", "log_loss"]
MULTICLASS_METRIC_NAMES: tuple[str, ...] = get_args(MulticlassMetric)
# The test metrics `tollgate models list` shows for each version, per column: a binary version's
# metric and a multiclass version's (typed, so a name outside the lists above fails `make lint`).
LISTED_METRICS: tuple[tuple[BinaryMetric, MulticlassMetric], ...] = (("roc_auc", "roc_auc_ovr_macro"),
                                                                     ("pr_auc", "f1_macro"))
# Model families a candidate can use; tollgate.steps.candidates maps each to its scikit-learn estimator.
ModelFamily = Literal["logistic_regression", "hist_gradient_boosting", "random_forest"]
MODEL_FAMILIES: tuple[str, ...] = get_args(ModelFamily)
# What the model server does with a request column the model does not know (serving.unknown_columns).
UnknownColumns = Literal["reject", "ignore"]
UNKNOWN_COLUMN_POLICIES: tuple[str, ...] = get_args(UnknownColumns)
# Metrics where a smaller value is better; the gate and the selector flip comparisons for them.
LOWER_IS_BETTER = frozenset({"log_loss", "brier"})


