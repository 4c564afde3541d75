"""Select component: keep the candidate with the best validation metric."""


from kfp.dsl import Input, Model, Output


def select(models: Input[list[Model]], selection_metric: str, best: Output[Model],
           multiclass_selection_metric: str = "roc_auc_ovr_macro") -> str:
    """Copy the candidate with the best validation metric (``multiclass_selection_metric`` for
    multiclass candidates) to ``best``; returns its id."""
    import json
    import os
    import shutil

    from tollgate.steps.select import select_best

    results = [dict(m.metadata, uri=m.path, params=json.loads(m.metadata["params_json"])) for m in models]
    if any(r.get("task") == "multiclass" for r in results):
        selection_metric = multiclass_selection_metric
    winner = select_best(results, selection_metric)
    shutil.copytree(winner["uri"], best.path, dirs_exist_ok=True)
    leaderboard = sorted(({"candidate_id": r["candidate_id"], "validation_metrics": r["validation_metrics"],
                           "params": r["params"], "family": r["family"]} for r in results),
                         key=lambda r: r["candidate_id"])
    with open(os.path.join(best.path, "leaderboard.json"), "w") as handle:
        json.dump(leaderboard, handle, indent=2)
    best.metadata.update({k: winner[k] for k in ("candidate_id", "family", "params_json", "validation_metrics")})
    best.metadata["selection_metric"] = selection_metric
    return winner["candidate_id"]
