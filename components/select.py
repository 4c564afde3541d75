"""Select component: keep the candidate with the best validation metric."""

from kfp.dsl import Input, Model, Output


def select(models: Input[list[Model]], selection_metric: str, multiclass_selection_metric: str,
           best: Output[Model]) -> str:
    """Copy the candidate with the best validation metric (``multiclass_selection_metric`` for
    multiclass candidates) to ``best``, with the Selection record; returns its id."""
    from tollgate.steps.select import run_select

    selection = run_select([m.path for m in models], selection_metric, multiclass_selection_metric, best.path)
    best.metadata.update(selection.kfp_metadata())
    return selection.winner.candidate_id
