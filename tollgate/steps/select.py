"""Select: pick the best trained candidate by its validation metric.

Kept apart from ``train`` so the select task never imports scikit-learn or pandas: it reads
each candidate's :class:`~tollgate.records.CandidateResult` and compares numbers.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from typing import TypeVar

from tollgate.artifacts import read_record, write_record
from tollgate.errors import TollgateError
from tollgate.metrics import LOWER_IS_BETTER
from tollgate.records import CANDIDATE_FILE, MULTICLASS, CandidateResult, LeaderboardEntry, Selection

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


def select_best(candidates: list[CandidateResult], selection_metric: str,
                multiclass_selection_metric: str) -> Selection:
    """The best candidate by ``selection_metric`` (by ``multiclass_selection_metric`` for multiclass
    candidates; ties to the earlier one) and the leaderboard of all, sorted by candidate id."""
    metric = multiclass_selection_metric if any(c.task == MULTICLASS for c in candidates) else selection_metric
    winner = _best(candidates, metric, lambda c: c.validation_metrics)
    leaderboard = sorted((LeaderboardEntry(c.candidate_id, c.family, c.params, c.validation_metrics)
                          for c in candidates), key=lambda e: e.candidate_id)
    return Selection(winner=winner, selection_metric=metric, leaderboard=leaderboard)


def run_select(candidate_dirs: Sequence[str], selection_metric: str, multiclass_selection_metric: str,
               best_dir: str) -> Selection:
    """Select as the DAG runs it: read each trained candidate's directory (its
    :class:`~tollgate.records.CandidateResult`, :data:`~tollgate.records.CANDIDATE_FILE`), choose
    (:func:`select_best`) and copy the winner's directory to ``best_dir``, with the
    :class:`~tollgate.records.Selection` record beside its files (:data:`SELECTION_FILE`): what
    evaluate, infra-validate and register read."""
    candidates = [read_record(CandidateResult, os.path.join(directory, CANDIDATE_FILE)) for directory in candidate_dirs]
    selection = select_best(candidates, selection_metric, multiclass_selection_metric)
    # The winner is one of the records read, so its directory is the one at its position.
    shutil.copytree(candidate_dirs[candidates.index(selection.winner)], best_dir, dirs_exist_ok=True)
    write_record(selection, os.path.join(best_dir, SELECTION_FILE))
    return selection
