"""No serving, evaluation or infra-validation code path unpickles: a pickle is code, the graph is data.

The behaviour is tested where it happens (a live pickle payload beside the graph is never run by the
server or infra-validation: test_serving_model.py, test_infra_validate.py). This test keeps the
whole package honest: no module reads a pickle at all, so no future path can start doing it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tollgate", "serving", "components", "pipelines")
UNPICKLERS = {("joblib", "load"), ("pickle", "load"), ("pickle", "loads"), ("cloudpickle", "load"),
              ("cloudpickle", "loads"), ("pd", "read_pickle"), ("pandas", "read_pickle")}


def _violations(path: Path) -> list[str]:
    found = []
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else None
            if (owner, node.func.attr) in UNPICKLERS:
                found.append(f"{where}:{node.lineno} {owner}.{node.func.attr}")
            for keyword in node.keywords:
                if keyword.arg == "allow_pickle" and not (isinstance(keyword.value, ast.Constant)
                                                         and keyword.value.value is False):
                    found.append(f"{where}:{node.lineno} allow_pickle")
        if isinstance(node, ast.ImportFrom) and node.module in ("pickle", "joblib"):
            if any(alias.name in ("load", "loads") for alias in node.names):
                found.append(f"{where}:{node.lineno} from {node.module} import load")
    return found


def test_nothing_in_the_package_unpickles():
    files = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    assert len(files) > 30
    violations = [v for path in files for v in _violations(path)]
    assert violations == []


def test_the_check_finds_an_unpickler(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import joblib\nimport numpy as np\n\n\ndef f(p):\n    np.load(p, allow_pickle=True)\n"
                      "    return joblib.load(p)\n")
    assert len(_violations(sample)) == 2
