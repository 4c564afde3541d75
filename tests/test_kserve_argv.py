"""kserve parses ``sys.argv`` on its first import and exits on its own options with values it does
not accept (``--protocol rest-v1``; kserve 0.20 ``kserve/model_server.py``: ``parser.parse_known_args()``
at module level, ``--protocol`` with choices v1/v2/grpc-v2). Importing Tollgate's serving package
must not touch ``sys.argv``; the processes Tollgate starts must still survive such flags."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import free_port

HOSTILE_ARGV = ["prog", "--protocol", "rest-v1", "--http_port", "not-a-number"]


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_importing_the_serving_package_leaves_argv_and_kserve_alone():
    result = _python(f"""
import sys
sys.argv = {HOSTILE_ARGV!r}
import tollgate.serving, tollgate.serving.__main__
assert sys.argv == {HOSTILE_ARGV!r}, sys.argv
assert "kserve" not in sys.modules, "importing the package imported kserve"
print("ok")
""")
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_kserve_really_reads_argv_and_the_helper_shields_it():
    """The reason the helper exists, pinned: a bare ``import kserve`` with these flags exits 2."""
    bare = _python(f"import sys; sys.argv = {HOSTILE_ARGV!r}; import kserve")
    assert bare.returncode == 2 and "invalid choice: 'rest-v1'" in bare.stderr, bare.stderr
    shielded = _python(f"""
import sys
sys.argv = {HOSTILE_ARGV!r}
from tollgate.serving import import_kserve_with_bare_argv
import_kserve_with_bare_argv()
import tollgate.serving.model
assert sys.argv == {HOSTILE_ARGV!r}, sys.argv
print("ok")
""")
    assert shielded.returncode == 0 and shielded.stdout.strip() == "ok", shielded.stderr


def test_the_cli_process_survives_kserves_own_option_names(tmp_path):
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([{"age": 40}]))
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens: the request itself must fail, not the import
    result = subprocess.run([sys.executable, "-m", "tollgate.cli", "predict", "--protocol", "rest-v1", "--url", url,
                             "--file", str(rows)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "invalid choice" not in result.stderr and result.stderr.startswith("error:"), result.stderr


def test_a_cli_command_that_does_not_serve_never_imports_kserve(tmp_path):
    # `tollgate run` builds and runs the DAG in this process; importing kserve there cost a second.
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('kserve loaded' if 'kserve' in sys.modules else 'no kserve'))\n"
            f"sys.argv = ['tollgate', 'compile', '--output', {str(tmp_path / 'dag.yaml')!r}]\n"
            "from tollgate.cli import main\n"
            "main()\n")
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "no kserve", result.stdout
    assert (tmp_path / "dag.yaml").is_file()
