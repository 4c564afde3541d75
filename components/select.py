"""Select component: keep the candidate with the best validation metric."""

from kfp.dsl import Input, Model, Output


def select(models: Input[list[Model]], selection_metric: str, multiclass_selection_metric: str,
           best: Output[Model]) -> str:
    """Copy the candidate with the best validation metric (``multiclass_selection_metric`` for
    multiclass candidates) to ``best``, with the Selection record; returns its id."""
    import os
    import shutil

    from tollgate.artifacts import read_record, write_record
    from tollgate.records import CANDIDATE_FILE, CandidateResult
    from tollgate.steps.select import SELECTION_FILE, run_select

    found = [(read_record(CandidateResult, os.path.join(m.path, CANDIDATE_FILE)), m.path) for m in models]
    selection = run_select([candidate for candidate, _ in found], selection_metric, multiclass_selection_metric)
    shutil.copytree(next(path for candidate, path in found if candidate is selection.winner), best.path,
                    dirs_exist_ok=True)
    write_record(selection, os.path.join(best.path, SELECTION_FILE))
    best.metadata.update({"candidate_id": selection.winner.candidate_id, "family": selection.winner.family,
                          "selection_metric": selection.selection_metric})
    return selection.winner.candidate_id
