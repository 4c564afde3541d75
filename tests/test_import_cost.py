"""Each DAG task imports only what it uses.

A task is a fresh process: every import statement of a component's function runs once per
task (per candidate for train), and scikit-learn, pandas and kserve each cost around a
second. These tests run exactly the imports a component function makes, in a fresh
interpreter, and check which heavy packages end up in ``sys.modules``. Timing is measured
in ``bench/task_profile.py``, never here.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("sklearn", "pandas", "scipy", "kserve", "fairlearn", "matplotlib", "skl2onnx", "onnxruntime", "pyarrow",
         "pydantic")

# What each task may load (beyond the standard library, kfp and numpy). Anything heavy not
# listed is a regression: it costs every run of that task (six times for train). pydantic
# comes with the task settings; select and gate read tollgate.metrics, which needs none.
ALLOWED = {
    "select": set(),
    "gate": set(),
    "register": set(),
    "deploy": {"pydantic"},
    "report": {"matplotlib"},
    "ingest": {"pandas", "pyarrow", "pydantic"},
    "validate": {"pandas", "pyarrow", "pydantic"},  # scipy loads when drift is measured against a reference
    "preprocess": {"pandas", "pyarrow", "pydantic"},
    "train": {"pandas", "pyarrow", "scipy", "sklearn"},  # skl2onnx and onnxruntime load when a candidate exports
    "evaluate": {"pandas", "pyarrow", "scipy", "sklearn", "pydantic"},  # onnxruntime loads with the first graph
    # pandas, pyarrow and kserve's client load once the model server is starting (the task reads the test
    # split and imports the client while the server boots on the other core)
    "infra_validate": {"pydantic"},
}


def _loaded_after(statements: list[str]) -> list[str]:
    """Top-level packages among HEAVY that are in sys.modules after running ``statements`` in a fresh process."""
    code = "\n".join([*statements, "import json, sys",
                      f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"])
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert finished.returncode == 0, finished.stderr
    return json.loads(finished.stdout.strip().splitlines()[-1])


def component_imports(step: str) -> list[str]:
    """The import statements a component's task runs: its module's and those inside its function.

    KFP ships only the function's source to the task (plus kfp's own imports), so these are
    exactly the task's imports; module-level ones are included to be strict.
    """
    tree = ast.parse((ROOT / "components" / f"{step}.py").read_text())
    statements = [ast.unparse(node) for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)
                  and node.module != "__future__"]
    function = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == step)
    statements += [ast.unparse(node) for node in ast.walk(function) if isinstance(node, ast.Import | ast.ImportFrom)]
    return statements


@pytest.mark.parametrize("step", sorted(ALLOWED))
def test_a_component_task_imports_only_what_it_uses(step):
    statements = component_imports(step)
    assert any("tollgate.steps" in s for s in statements), statements  # it does call its step
    loaded = set(_loaded_after(statements))
    assert loaded <= ALLOWED[step], f"{step} loads {sorted(loaded - ALLOWED[step])}: {statements}"


@pytest.mark.parametrize("module", ["select", "gate", "register", "deploy", "report"])
def test_decision_steps_import_neither_scikit_learn_nor_pandas(module):
    loaded = _loaded_after([f"import tollgate.steps.{module}"])
    assert not {"sklearn", "pandas", "scipy"} & set(loaded), loaded


def test_the_model_contract_does_not_import_the_model_server():
    # train, evaluate and infra-validate build ONNX feeds with these; kserve is the server's.
    loaded = _loaded_after(["import tollgate.serving.schema, tollgate.serving.runtime",
                            "import tollgate.steps.preprocess, tollgate.steps.train, tollgate.steps.infra_validate"])
    assert "kserve" not in loaded and "sklearn" not in loaded, loaded


_CYCLE_WITH_FINALIZER = """
import gc, os
gc.disable()  # the cycle below must survive until shutdown
import tollgate
class Swept:
    def __del__(self, write=os.write):
        write(1, b"swept")
garbage = Swept(); garbage.cycle = garbage; del garbage
write = os.write
write(1, f"{gc.get_threshold()[0]} ".encode())
"""


def test_a_task_process_collects_less_often_and_skips_the_garbage_sweep_at_exit():
    # With _KFP_RUNTIME=true (a KFP task), shutdown does not sweep the heap again: the cycle is
    # left to the operating system. Any other process (CLI, server, tests) shuts down as usual.
    env = {key: value for key, value in os.environ.items() if key != "_KFP_RUNTIME"}
    as_task = subprocess.run([sys.executable, "-c", _CYCLE_WITH_FINALIZER], capture_output=True, text=True,
                             env={**env, "_KFP_RUNTIME": "true"}, cwd=ROOT, check=True)
    as_other = subprocess.run([sys.executable, "-c", _CYCLE_WITH_FINALIZER], capture_output=True, text=True,
                              env=env, cwd=ROOT, check=True)
    # A task also collects young objects less often (imports create many long-lived ones).
    assert (as_task.stdout, as_other.stdout) == ("10000 ", "700 swept")


def test_kfp_runs_a_lightweight_component_with_the_runtime_flag_tollgate_relies_on():
    # kfp's own command for lightweight components (kfp.dsl.component_factory) sets _KFP_RUNTIME=true
    # for the executor; tollgate/__init__.py keys the exit behaviour on it.
    from kfp import dsl

    from tollgate.components import build_components

    component = build_components("tollgate:test").gate
    assert isinstance(component, dsl.base_component.BaseComponent)
    command = " ".join(component.component_spec.implementation.container.command)
    assert "_KFP_RUNTIME=true python3 -m kfp.dsl.executor_main" in command


def test_preprocessing_a_table_loads_neither_scikit_learn_nor_scipy():
    # The task's work, not only its imports: the split is numpy's (tollgate.steps.preprocess.stratified_indices).
    loaded = _loaded_after(["from tollgate.data.builtin import generate_applicants",
                            "from tollgate.config import load_config",
                            "from tollgate.settings import PreprocessSettings",
                            "from tollgate.steps.preprocess import run_preprocess",
                            "frame = generate_applicants(rows=2000)",
                            "spec, plan = run_preprocess(frame, PreprocessSettings.from_config(load_config(None, {})))",
                            "plan.take(frame)"])
    assert "pandas" in loaded and not {"sklearn", "scipy"} & set(loaded), loaded


def test_building_the_pipeline_imports_neither_pandas_nor_scikit_learn():
    # `tollgate run` builds the DAG (expanding the candidate grid) before its first task starts.
    loaded = _loaded_after(["from tollgate.config import load_config",
                            "from tollgate.pipelines.training import build_pipeline",
                            "build_pipeline(load_config(None, {}))"])
    assert not {"pandas", "sklearn", "scipy"} & set(loaded), loaded


def _step_calls(tree: ast.AST) -> set[tuple[str, str]]:
    """(module, function) for every function imported from tollgate.steps.* and called in ``tree``."""
    imported = {alias.asname or alias.name: (node.module, alias.name) for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tollgate.steps.")
                for alias in node.names}
    return {imported[node.func.id] for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in imported}


def test_the_pipeline_benchmark_script_calls_the_components_step_functions():
    # bench/pipeline.py compares the DAG with a plain script; that is like for like only if the
    # script calls exactly the step entry points (run_<step>) the components call. retrain_check
    # runs only with retrain.when != always, which the benchmark does not use; kfp_view only
    # fills KFP's UI.
    components = set()
    for path in sorted((ROOT / "components").glob("*.py")):
        if path.stem not in ("__init__", "retrain_check"):
            components |= _step_calls(ast.parse(path.read_text()))
    bench = ast.parse((ROOT / "bench" / "pipeline.py").read_text())
    script = next(node for node in ast.walk(bench) if isinstance(node, ast.FunctionDef) and node.name == "run_script")
    train_worker = next(node for node in ast.walk(bench) if isinstance(node, ast.FunctionDef) and node.name == "_train_one")
    called = _step_calls(script) | _step_calls(train_worker)
    components = {call for call in components if call[1].startswith("run_")}
    assert len(components) == 11 and components <= called, sorted(components - called)
