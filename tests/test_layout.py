"""components/, pipelines/ and serving/ import as tollgate.* with standard tools: from a plain
checkout (no install mapping), and from the built wheel, which holds real files."""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import project_files

REPO = Path(__file__).resolve().parents[1]
MODULES = ("tollgate.components", "tollgate.pipelines.training", "tollgate.serving.model", "tollgate.cli")


# Python started with -S processes no .pth file, so no install mapping (an editable install's finder)
# exists; site-packages is then put on sys.path as a plain directory, for the dependencies alone.
# (Under -S a venv's site-packages is not found by the interpreter itself, so this process names it.)
_WITHOUT_ANY_INSTALL = (
    "import sys\n"
    f"sys.path += {site.getsitepackages()!r}\n"
    "assert not [m for m in sys.modules if 'editable' in m.lower()], sorted(sys.modules)\n"
    "assert not [f for f in sys.meta_path if 'editable' in getattr(f, '__module__', '').lower()], sys.meta_path\n"
)


def test_a_plain_checkout_resolves_every_package_without_the_install(tmp_path):
    # A copy of the checkout, away from the one the editable install maps: a module found through
    # that install would resolve into REPO, not into the copy.
    checkout = _source_tree(tmp_path / "checkout")
    code = _WITHOUT_ANY_INSTALL + (
        "import importlib\n"
        f"for name in {MODULES!r}:\n"
        "    print(importlib.import_module(name).__file__)\n"
    )
    result = subprocess.run([sys.executable, "-S", "-c", code], cwd="/", capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(checkout), "PATH": "/usr/bin"})
    assert result.returncode == 0, result.stderr
    files = [Path(line) for line in result.stdout.split()]
    assert len(files) == len(MODULES)
    assert all(str(path).startswith(str(checkout / "tollgate")) for path in files), files


def test_the_symlinks_are_relative_and_point_at_the_top_level_folders():
    for name in ("components", "pipelines", "serving"):
        link = REPO / "tollgate" / name
        assert link.is_symlink() and str(link.readlink()) == f"../{name}"
        assert (link / "__init__.py").is_file()


def _source_tree(destination: Path) -> Path:
    """A copy of :func:`tests.conftest.project_files` (symlinks kept), so build leftovers cannot leak into the wheel."""
    for name in project_files():
        source, target = REPO / name, destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(source.readlink())
        else:
            shutil.copy2(source, target)
    return destination


def test_a_source_archive_lists_the_same_project_files_as_git(monkeypatch):
    # Without git (a source archive), .gitignore decides; here both ways must agree.
    in_git = set(project_files())
    real_run = subprocess.run

    def no_git(command, *args, **kwargs):
        if command[:2] == ["git", "ls-files"]:
            return subprocess.CompletedProcess(command, 128, b"", b"not a git repository")
        return real_run(command, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", no_git)
    assert set(project_files()) == in_git and "tollgate/records.py" in in_git


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("wheel")
    tree = _source_tree(tmp_path_factory.mktemp("source"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(directory), str(tree)], check=True, capture_output=True, timeout=300)
    (built,) = directory.glob("tollgate-*.whl")
    return built


def test_the_wheel_holds_exactly_the_source_modules_as_real_files_under_tollgate(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {f"tollgate/{path.relative_to(REPO / 'tollgate')}" for path in (REPO / "tollgate" / "templates").rglob("*.j2")}
    assert "tollgate/templates/report/page.html.j2" in templates
    for expected in ("tollgate/components/train.py", "tollgate/pipelines/training.py", "tollgate/serving/model.py",
                     "tollgate/defaults/tollgate.yaml", *templates):
        assert expected in names
    assert not any(name.startswith(("components/", "serving/", "pipelines/")) for name in names)
    # Every module of the source (the symlinked folders followed), and nothing else: no file left over
    # from an older build, none missing from the package list.
    source = {name for name in project_files() if name.endswith(".py")}
    expected_modules = {f"tollgate/{name}" if not name.startswith("tollgate/") else name
                        for name in source if name.startswith(("tollgate/", "components/", "pipelines/", "serving/"))}
    assert {name for name in names if name.endswith(".py")} == expected_modules


def test_the_report_renders_from_the_installed_wheel_alone(wheel, tmp_path):
    """The templates are package data, loaded through the package (not a path into the checkout)."""
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    code = _WITHOUT_ANY_INSTALL + (
        "from tollgate.steps.report import ReportInputs, render_report\n"
        "import importlib, tollgate\n"
        f"assert all(importlib.import_module(m).__file__.startswith({str(unpacked)!r}) for m in {MODULES!r})\n"
        "print(tollgate.__file__)\n"
        "print(render_report(ReportInputs(model_name='from-the-wheel', failure='ingest failed')))\n"
    )
    result = subprocess.run([sys.executable, "-S", "-c", code], cwd="/", capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(unpacked), "PATH": "/usr/bin"})
    assert result.returncode == 0, result.stderr
    origin, page = result.stdout.split("\n", 1)
    assert origin.startswith(str(unpacked))
    assert "Tollgate report: from-the-wheel" in page and "ingest failed" in page and page.count("<section") == 7


def test_every_package_the_code_imports_is_a_declared_dependency():
    """pyproject.toml lists every distribution Tollgate's own modules import, not only those that happen
    to bring the others in (scipy came through scikit-learn, httpx through kserve...)."""
    import ast
    import importlib.metadata
    import re
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[=<>\[ ;]", requirement)[0].lower().replace("_", "-")
                for requirement in project["dependencies"]}
    imported: dict[str, str] = {}
    # The package and the three top-level folders it links to (Path.rglob does not follow symlinks
    # on Python 3.11, so the linked folders are walked on their own).
    modules = sorted(path for folder in ("tollgate", "components", "pipelines", "serving")
                     for path in (REPO / folder).rglob("*.py") if "__pycache__" not in path.parts)
    assert {"components/train.py", "pipelines/training.py", "serving/model.py", "tollgate/records.py"} <= {
        str(path.relative_to(REPO)) for path in modules}
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for name in names:
                imported.setdefault(name.split(".")[0], str(path.relative_to(REPO)))
    distributions = importlib.metadata.packages_distributions()
    undeclared = {name: where for name, where in imported.items()
                  if name not in sys.stdlib_module_names and name != "tollgate"
                  and not {d.lower().replace("_", "-") for d in distributions.get(name, [name])} & declared}
    assert not undeclared, f"imported but not in pyproject.toml's dependencies: {undeclared}"
