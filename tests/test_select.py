"""Select: the best candidate by its validation metric, and the directory the DAG's later steps read."""

from __future__ import annotations

import pytest

from tollgate.artifacts import write_record
from tollgate.errors import TollgateError
from tollgate.records import CANDIDATE_FILE, MULTICLASS, CandidateResult, Selection
from tollgate.steps.select import SELECTION_FILE, run_select, select_best


def result(candidate_id: str, task: str = "binary", **metrics: float) -> CandidateResult:
    return CandidateResult(candidate_id=candidate_id, family="logistic_regression", params={"C": 1.0},
                           validation_metrics=metrics, task=task)


def test_the_best_by_the_selection_metric_wins_and_a_tie_goes_to_the_earlier():
    candidates = [result("b", roc_auc=0.70), result("c", roc_auc=0.80), result("a", roc_auc=0.80)]
    selection = select_best(candidates, "roc_auc", "roc_auc_ovr_macro")
    assert selection.winner.candidate_id == "c" and selection.selection_metric == "roc_auc"
    assert [entry.candidate_id for entry in selection.leaderboard] == ["a", "b", "c"]


def test_a_metric_where_lower_is_better_selects_the_lowest():
    selection = select_best([result("a", log_loss=0.5), result("b", log_loss=0.3)], "log_loss", "log_loss")
    assert selection.winner.candidate_id == "b"


def test_multiclass_candidates_are_ranked_by_the_multiclass_metric():
    candidates = [result("a", MULTICLASS, roc_auc_ovr_macro=0.6, f1_macro=0.9),
                  result("b", MULTICLASS, roc_auc_ovr_macro=0.7, f1_macro=0.1)]
    selection = select_best(candidates, "f1_macro", "roc_auc_ovr_macro")
    assert selection.winner.candidate_id == "b" and selection.selection_metric == "roc_auc_ovr_macro"


def test_a_candidate_without_the_metric_is_passed_over_and_none_at_all_is_an_error():
    assert select_best([result("a"), result("b", roc_auc=0.6)], "roc_auc", "roc_auc_ovr_macro").winner.candidate_id == "b"
    with pytest.raises(TollgateError, match="no candidate reported the selection metric 'roc_auc'"):
        select_best([result("a", pr_auc=0.5)], "roc_auc", "roc_auc_ovr_macro")
    with pytest.raises(TollgateError, match="no trained candidates"):
        select_best([], "roc_auc", "roc_auc_ovr_macro")


def test_run_select_reads_the_trained_directories_and_copies_the_winner_with_its_selection(tmp_path):
    directories = []
    for candidate in (result("weak", roc_auc=0.6), result("strong", roc_auc=0.9), result("middle", roc_auc=0.7)):
        directory = tmp_path / "train" / candidate.candidate_id
        directory.mkdir(parents=True)
        write_record(candidate, directory / CANDIDATE_FILE)
        (directory / "model.onnx").write_text(f"graph of {candidate.candidate_id}")
        directories.append(str(directory))
    best = tmp_path / "best"

    selection = run_select(directories, "roc_auc", "roc_auc_ovr_macro", str(best))

    assert selection.winner.candidate_id == "strong"
    assert (best / "model.onnx").read_text() == "graph of strong"  # the winner's own files
    assert Selection.from_json((best / SELECTION_FILE).read_text()) == selection  # what evaluate reads
    assert [entry.candidate_id for entry in selection.leaderboard] == ["middle", "strong", "weak"]
