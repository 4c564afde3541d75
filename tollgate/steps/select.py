"""Select: pick the best trained candidate by its validation metric.

Kept apart from ``train`` so the select task never imports scikit-learn or pandas: it reads
each candidate's :class:`~tollgate.records.CandidateResult` and compares numbers.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from tollgate.artifacts import write_record
from tollgate.errors import TollgateError
from tollgate.metrics import LOWER_IS_BETTER
from tollgate.records import MULTICLASS, CandidateResult, LeaderboardEntry, Selection

SELECTION_FILE = "selection.json"  # in the selected model's directory: the Selection record

T = TypeVar("T")


def _best(results: Sequence[T], metric: str, metrics_of: Callable[[T], dict[str, float]]) -> T:
    if not results:
        raise TollgateError("no trained candidates to select from")
    scored = [r for r in results if metric in metrics_of(r)]
    if not scored:
        raise TollgateError(f"no candidate reported the selection metric {metric!r}")
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    return max(scored, key=lambda r: (sign * metrics_of(r)[metric], -results.index(r)))


def run_select(candidates: list[CandidateResult], selection_metric: str,
               multiclass_selection_metric: str) -> Selection:
    """Select as the DAG runs it: the best candidate by ``selection_metric`` (by
    ``multiclass_selection_metric`` for multiclass candidates; ties to the earlier one) and the
    leaderboard of all, sorted by candidate id."""
    metric = multiclass_selection_metric if any(c.task == MULTICLASS for c in candidates) else selection_metric
    winner = _best(candidates, metric, lambda c: c.validation_metrics)
    leaderboard = sorted((LeaderboardEntry(c.candidate_id, c.family, c.params, c.validation_metrics)
                          for c in candidates), key=lambda e: e.candidate_id)
    return Selection(winner=winner, selection_metric=metric, leaderboard=leaderboard)


def write_selected(selection: Selection, candidate_dirs: Mapping[str, str], best_dir: str) -> None:
    """Copy the winner's directory (``candidate_dirs``: each candidate id's trained directory) to
    ``best_dir``, with the :class:`~tollgate.records.Selection` record beside its files
    (:data:`SELECTION_FILE`): what evaluate, infra-validate and register read."""
    winner = selection.winner.candidate_id
    if winner not in candidate_dirs:
        raise TollgateError(f"the selected candidate {winner} has no trained directory among {sorted(candidate_dirs)}")
    shutil.copytree(candidate_dirs[winner], best_dir, dirs_exist_ok=True)
    write_record(selection, os.path.join(best_dir, SELECTION_FILE))
