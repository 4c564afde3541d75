"""components/, pipelines/ and serving/ import as tollgate.* with standard tools: from a plain
checkout (no install mapping), and from the built wheel, which holds real files."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODULES = ("tollgate.components", "tollgate.pipelines.training", "tollgate.serving.model", "tollgate.cli")


def test_a_plain_checkout_resolves_every_package_without_the_install():
    # Drop whatever finder an editable install adds, so only PYTHONPATH=<checkout> is left.
    code = (
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in type(f).__module__.lower()]\n"
        "sys.path_hooks[:] = [h for h in sys.path_hooks if 'editable' not in getattr(h, '__module__', '').lower()]\n"
        f"import importlib\n"
        f"for name in {MODULES!r}:\n"
        "    print(importlib.import_module(name).__file__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd="/", env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin"},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    files = [Path(line) for line in result.stdout.split()]
    assert len(files) == len(MODULES)
    assert all(str(path).startswith(str(REPO / "tollgate")) for path in files), files


def test_the_symlinks_are_relative_and_point_at_the_top_level_folders():
    for name in ("components", "pipelines", "serving"):
        link = REPO / "tollgate" / name
        assert link.is_symlink() and str(link.readlink()) == f"../{name}"
        assert (link / "__init__.py").is_file()


def test_the_wheel_holds_real_files_under_tollgate(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path), str(REPO)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("tollgate-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("tollgate/components/train.py", "tollgate/pipelines/training.py", "tollgate/serving/model.py",
                     "tollgate/defaults/tollgate.yaml"):
        assert expected in names
    assert not any(name.startswith(("components/", "serving/", "pipelines/")) for name in names)
