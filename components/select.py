"""Select component: keep the candidate with the best validation metric."""

from kfp.dsl import Input, Model, Output


def select(models: Input[list[Model]], selection_metric: str, multiclass_selection_metric: str,
           best: Output[Model]) -> str:
    """Copy the candidate with the best validation metric (``multiclass_selection_metric`` for
    multiclass candidates) to ``best``, with the Selection record; returns its id."""
    import os

    from tollgate.artifacts import read_record
    from tollgate.records import CANDIDATE_FILE, CandidateResult
    from tollgate.steps.select import run_select, write_selected

    found = {m.path: read_record(CandidateResult, os.path.join(m.path, CANDIDATE_FILE)) for m in models}
    selection = run_select(list(found.values()), selection_metric, multiclass_selection_metric)
    write_selected(selection, {candidate.candidate_id: path for path, candidate in found.items()}, best.path)
    best.metadata.update({"candidate_id": selection.winner.candidate_id, "family": selection.winner.family,
                          "selection_metric": selection.selection_metric})
    return selection.winner.candidate_id
