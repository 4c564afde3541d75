"""Registry chaos: concurrent writers, kill -9 and tampering against both registry backends.

    .venv/bin/python bench/registry_chaos.py                  # full counts (50 trials per case, 40 kills)
    .venv/bin/python bench/registry_chaos.py --trials 10 --kills 5 --backends local

Every race is between real processes released together by a barrier (Python API) or a
shared start time (CLI), against a local directory and the S3-compatible test server
(moto on 127.0.0.1, started here). What is counted, per backend:

* register ∥ register: duplicate version numbers, versions holding the other writer's
  files, versions failing verification;
* promote ∥ promote, rollback ∥ rollback, promote ∥ rollback (Python API and two real
  ``tollgate models`` processes): lost updates, i.e. final alias states that no serial
  order of the operations that reported success produces;
* kill -9 at a random point of publish and of promote, then ``gc``: complete versions
  lost, half-written versions visible, aliases pointing nowhere, litter left after gc;
* control: promote ∥ promote with alias writes made unconditional (the code before the
  fix), to show the harness does see lost updates when they happen;
* tampering: a pickle that creates a marker file when loaded, swapped into a registered
  version, then every read path (verified download, serving fetch and load, infra-
  validation's check, ``verify``): how many times the marker appeared.

tests/test_registry_concurrency.py runs the same functions with small counts.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import multiprocessing
import os
import pickle
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ALIAS_CASES = {
    "promote||promote": (("promote", 4), ("promote", 1)),
    "rollback||rollback": (("rollback", None), ("rollback", None)),
    "promote||rollback": (("promote", 4), ("rollback", None)),
}
# Production v3, previous v2; v2 replaced v1, v3 replaced v2, v4 would replace v3.
INITIAL_ALIASES = {"production": {"version": 3, "updated_at": "2026-01-01T00:00:00+00:00", "reason": "setup"},
                   "previous": {"version": 2, "updated_at": "2026-01-01T00:00:00+00:00", "reason": "setup"}}


class MarkerPickle:
    """Unpickling this creates ``path``: stands in for code an attacker's pickle would run."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def version_source(parent: Path, payload: str) -> Path:
    """A minimal version directory whose model file holds ``payload``."""
    source = Path(tempfile.mkdtemp(dir=parent, prefix="src-"))
    (source / "model.joblib").write_text(payload)
    (source / "model.onnx").write_text(payload)  # required since the ONNX contract
    (source / "input_schema.json").write_text(json.dumps({"columns": [{"name": "x", "dtype": "float64"}]}))
    return source


def setup_alias_model(uri: str, model: str, work: Path) -> None:
    """Versions v1..v4 with recorded lineage, aliases at production v3 / previous v2."""
    from tollgate.registry import open_registry

    registry = open_registry(uri)
    for number in range(1, 5):
        registry.register(model, version_source(work, f"m{number}"), {"replaced_champion": number - 1 or None})
    registry.restore_aliases(model, INITIAL_ALIASES)


def _state(aliases: dict) -> tuple:
    return tuple((name, aliases[name]["version"]) for name in sorted(aliases))


def serial_outcomes(uri: str, model: str, ops: list[tuple[str, Any]]) -> set[tuple]:
    """Final alias states of every order of ``ops`` applied one after another (orders in which
    an op would fail are impossible, since these ops succeeded)."""
    from tollgate.errors import RegistryError
    from tollgate.registry import open_registry

    registry = open_registry(uri)
    outcomes = set()
    for order in itertools.permutations(ops):
        registry.restore_aliases(model, INITIAL_ALIASES)
        try:
            for op, arg in order:
                _apply(registry, model, op, arg)
        except RegistryError:
            continue
        outcomes.add(_state(registry.aliases(model)))
    registry.restore_aliases(model, INITIAL_ALIASES)
    return outcomes


def _apply(registry, model: str, op: str, arg: Any):
    if op == "promote":
        return registry.promote(model, arg, reason="race")
    if op == "rollback":
        return registry.rollback(model)
    if op == "register":
        return registry.register(model, arg, {}).version
    raise ValueError(op)


def _race_worker(barrier, uri: str, model: str, op: str, arg: Any, results) -> None:
    from tollgate.errors import TollgateError
    from tollgate.registry import open_registry

    registry = open_registry(uri)
    registry.store.version_numbers(model)  # connect (and check the bucket) before the start line
    barrier.wait()
    try:
        value = _apply(registry, model, op, arg)
        results.put((op, arg, "ok", value if op == "register" else None))
    except TollgateError as exc:
        results.put((op, arg, "failed", str(exc)))


def _run_pair(uri: str, model: str, ops) -> list[tuple]:
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(len(ops))
    results = context.Queue()
    workers = [context.Process(target=_race_worker, args=(barrier, uri, model, op, arg, results)) for op, arg in ops]
    for worker in workers:
        worker.start()
    outcome = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    return outcome


def race_register(uri: str, trials: int, work: Path) -> dict[str, Any]:
    """Two registrations released together, ``trials`` times."""
    from tollgate.registry import open_registry

    registry = open_registry(uri)
    model = f"race-register-{random.randrange(1 << 30)}"
    duplicates = mixed = unverified = failed = 0
    for trial in range(trials):
        sources = [version_source(work, f"trial{trial}-writer{w}") for w in range(2)]
        results = _run_pair(uri, model, [("register", s) for s in sources])
        if any(status != "ok" for _, _, status, _ in results):
            failed += 1
            continue
        numbers = [value for _, _, _, value in results]
        if len(set(numbers)) != 2:
            duplicates += 1
            continue
        for (_, source, _, number) in results:
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    registry.download(model, number, tmp)
                except Exception:
                    unverified += 1
                    continue
                if (Path(tmp) / "model.joblib").read_text() != (source / "model.joblib").read_text():
                    mixed += 1
        for source in sources:
            shutil.rmtree(source, ignore_errors=True)
    return {"trials": trials, "duplicates": duplicates, "mixed_files": mixed, "failed_verification": unverified,
            "failed_registrations": failed}


def race_aliases(uri: str, case: str, trials: int, work: Path, via_cli: bool = False) -> dict[str, Any]:
    """``case`` from :data:`ALIAS_CASES`, ``trials`` times; counts final states outside every serial order."""
    from tollgate.registry import open_registry

    registry = open_registry(uri)
    model = f"race-{case.replace('||', '-')}-{random.randrange(1 << 30)}"
    setup_alias_model(uri, model, work)
    ops = list(ALIAS_CASES[case])
    serial_cache: dict[tuple, set] = {}
    lost = losers = 0
    examples = []
    for _ in range(trials):
        registry.restore_aliases(model, INITIAL_ALIASES)
        results = _run_cli_pair(uri, model, ops) if via_cli else _run_pair(uri, model, ops)
        succeeded = tuple(sorted((op, arg) for op, arg, status, _ in results if status == "ok"))
        losers += sum(status != "ok" for _, _, status, _ in results)
        final = _state(registry.aliases(model))
        if succeeded not in serial_cache:
            serial_cache[succeeded] = serial_outcomes(uri, model, list(succeeded))
        if final not in serial_cache[succeeded]:
            lost += 1
            examples.append({"succeeded": succeeded, "final": final, "serial": sorted(serial_cache[succeeded])})
    return {"trials": trials, "lost_updates": lost, "refused_with_message": losers, "examples": examples[:3]}


# A real `tollgate models ...` process: imports first, says "ready", then waits at the start
# line (a file the parent creates once both are ready) and runs the CLI exactly as the script does.
_CLI_LAUNCHER = """
import os, sys, time
from tollgate.cli import app
import tollgate.registry.local, tollgate.registry.s3, minio
go = sys.argv[1]
print("ready", flush=True)
deadline = time.monotonic() + 60
while not os.path.exists(go) and time.monotonic() < deadline:
    time.sleep(0.0005)
sys.argv = ["tollgate"] + sys.argv[2:]
app()
"""


def _run_cli_pair(uri: str, model: str, ops) -> list[tuple]:
    go = Path(tempfile.mkdtemp(prefix="tollgate-go-")) / "go"
    processes = []
    for op, arg in ops:
        args = ["models", op] + ([f"v{arg}"] if op == "promote" else []) + ["--registry", uri, "--model-name", model]
        processes.append(subprocess.Popen([sys.executable, "-c", _CLI_LAUNCHER, str(go), *args],
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT))
    for process in processes:
        assert process.stdout.readline().strip() == "ready"
    go.touch()
    results = []
    for (op, arg), process in zip(ops, processes, strict=True):
        out, err = process.communicate(timeout=120)
        results.append((op, arg, "ok" if process.returncode == 0 else "failed", (out + err).strip()))
    shutil.rmtree(go.parent, ignore_errors=True)
    return results


@contextlib.contextmanager
def blind_alias_writes():
    """Control for the harness: alias writes without compare-and-swap (last writer wins), as
    before the fix. Applied before the workers fork, so they inherit it."""
    from tollgate.registry.local import LocalStore
    from tollgate.registry.s3 import S3Store

    saved = LocalStore.write_if, S3Store.write_if

    def local_blind(self, key, data, token):
        path = self.root / key
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.write_bytes(data)
        os.replace(temporary, path)
        return True

    def s3_blind(self, key, data, token):
        self._put(key, data, "application/json")
        return True

    LocalStore.write_if, S3Store.write_if = local_blind, s3_blind
    try:
        yield
    finally:
        LocalStore.write_if, S3Store.write_if = saved


_PUBLISH_CHILD = """
import json, sys, tempfile
from pathlib import Path
from tollgate.registry import open_registry
uri, model, work = sys.argv[1:4]
registry = open_registry(uri)
registry.store.version_numbers(model)
print("ready", flush=True)
for i in range(10000):
    source = Path(tempfile.mkdtemp(dir=work))
    (source / "model.joblib").write_bytes(b"x" * 200000)
    (source / "model.onnx").write_bytes(b"x" * 1000)
    (source / "input_schema.json").write_text(json.dumps({"columns": []}))
    version = registry.register(model, source, {}).version
    print(f"done {version}", flush=True)
"""

_PROMOTE_CHILD = """
import sys
from tollgate.registry import open_registry
uri, model = sys.argv[1:3]
registry = open_registry(uri)
registry.aliases(model)
print("ready", flush=True)
for i in range(100000):
    registry.promote(model, 1 + i % 4, reason="chaos")
    if i % 3 == 0:
        registry.rollback(model)
"""


def chaos_kill(uri: str, target: str, kills: int, work: Path, seed: int = 0) -> dict[str, Any]:
    """kill -9 a process in a loop of publishes (or alias moves) at random moments, ``kills``
    times; then check what readers see and collect the litter with ``gc``."""
    from tollgate.registry import open_registry

    rng = random.Random(seed)
    registry = open_registry(uri)
    model = f"chaos-{target}-{random.randrange(1 << 30)}"
    if target == "promote":
        setup_alias_model(uri, model, work)
    completed: set[int] = set(registry.store.version_numbers(model))
    problems: list[str] = []
    for _ in range(kills):
        script = _PUBLISH_CHILD if target == "publish" else _PROMOTE_CHILD
        child = subprocess.Popen([sys.executable, "-c", script, uri, model, str(work)], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.6))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate()
        completed.update(int(line.split()[1]) for line in out.splitlines() if line.startswith("done "))
        visible = set(registry.store.version_numbers(model))
        if not completed <= visible:
            problems.append(f"complete versions lost: {sorted(completed - visible)}")
        for number in visible:
            result = registry.verify(model, number)
            if result.status != "ok":
                problems.append(f"v{number} visible but {result.status}: {result.detail}")
        aliases = registry.aliases(model)  # raises if corrupt
        for name, record in aliases.items():
            if record["version"] not in visible:
                problems.append(f"{name} points at v{record['version']}, which is not complete")
    before = registry.store.litter(model)
    report = registry.gc(older_than_seconds=0, models=[model])
    after = registry.store.litter(model)
    if after:
        problems.append(f"litter left after gc: {after}")
    if not completed <= set(registry.store.version_numbers(model)):
        problems.append("gc removed a complete version")
    for record in registry.aliases(model).values():
        if not registry.store.is_complete(model, record["version"]):
            problems.append("gc removed an alias target")
    next_version = registry.register(model, version_source(work, "after-gc"), {}).version
    claimed = registry.store.version_numbers(model, include_incomplete=True)
    if next_version != max(claimed):
        problems.append(f"after gc the next version was v{next_version}, but v{max(claimed)} was claimed")
    return {"kills": kills, "completed_versions": len(completed), "litter_before_gc": len(before),
            "removed_by_gc": len(report.removed), "problems": problems}


def tamper_trials(uri: str, trials: int, work: Path, seed: int = 0) -> dict[str, Any]:
    """Swap a marker-writing pickle (or a damaged copy) into a registered version's files and try
    every read path; count loads of tampered bytes (the marker appearing) and missed refusals."""
    from tollgate.errors import TollgateError
    from tollgate.registry import open_registry, verify_directory
    from tollgate.serving.source import fetch_registered

    rng = random.Random(seed)
    registry = open_registry(uri)
    model = f"tamper-{random.randrange(1 << 30)}"
    version = registry.register(model, version_source(work, "genuine"), {}).version
    registry.promote(model, version)
    marker = work / f"marker-{model}"
    loads = missed = 0
    key = f"{model}/v{version}/model.joblib"
    original = registry.store.read_bytes(key)
    for trial in range(trials):
        flip = rng.randrange(len(original))
        swapped = pickle.dumps(MarkerPickle(str(marker))) if trial % 2 == 0 else \
            bytes(b ^ (1 if i == flip else 0) for i, b in enumerate(original))
        _overwrite(registry, key, swapped)
        for path in ("download", "fetch_registered", "verify", "verify_directory"):
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    if path == "download":
                        registry.download(model, version, tmp)
                        loaded = Path(tmp)
                    elif path == "fetch_registered":
                        loaded, _ = fetch_registered(uri, model, "production", tmp)
                    elif path == "verify":
                        if registry.verify(model, version).status == "failed":
                            continue
                        missed += 1
                        continue
                    else:
                        if not Path(registry.store.version_uri(model, version)).is_dir():
                            continue  # S3: no directory to check in place
                        verify_directory(registry.store.version_uri(model, version))
                        loaded = Path(registry.store.version_uri(model, version))
                except TollgateError:
                    continue
                missed += 1
                import joblib

                try:
                    joblib.load(loaded / "model.joblib")  # what a reader would do next
                except Exception:
                    pass
        if marker.exists():
            loads += 1
            marker.unlink()
    _overwrite(registry, key, original)
    return {"trials": trials, "tampered_loads": loads, "missed_refusals": missed}


def _overwrite(registry, key: str, data: bytes) -> None:
    store = registry.store
    if hasattr(store, "root") and not hasattr(store, "bucket"):
        (store.root / key).write_bytes(data)
    else:
        import io

        store.client.put_object(store.bucket, store._key(key), io.BytesIO(data), len(data))


# -- the corruption table -------------------------------------------------------------------

FILES = ("model.joblib", "input_schema.json", "metadata.json", "data_schema.json", "_COMPLETE", "aliases.json")
DAMAGE = ("truncated", "wrong-type", "random bytes")


def damage(path: Path, how: str) -> None:
    """Truncate a file to half, replace it with a JSON list, or with 64 random bytes."""
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "wrong-type":
        path.write_bytes(b"[]")
    else:
        path.write_bytes(random.Random(path.name).randbytes(64))


def write_run_config(directory: Path) -> Path:
    """A config that keeps `tollgate run`'s run directories under ``directory``."""
    path = directory / "run-config.yaml"
    path.write_text(f"run:\n  root: {directory / 'cli-runs'}\n")
    return path


def cli(*args: str) -> tuple[int, str]:
    """Run one `tollgate` command in this process; (exit code, stdout + stderr)."""
    from typer.testing import CliRunner

    from tollgate.cli import app

    result = CliRunner().invoke(app, list(args))
    return result.exit_code, (result.stdout + result.stderr).strip()


def corruption_row(registry: Path, model: str, name: str, how: str, work: Path) -> dict[str, tuple[int, str]]:
    """Damage one file of production v1 in a local registry and record (exit code, output) of
    `models list`, `models show`, `serve` and `run` (serve and run stop before any port or training)."""
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        ports = [str(a.getsockname()[1]), str(b.getsockname()[1])]
    damage(registry / model / (name if name == "aliases.json" else f"v1/{name}"), how)
    common = ("--registry", str(registry), "--model-name", model)
    return {
        "models list": cli("models", "list", *common),
        "models show": cli("models", "show", "production", *common),
        "serve": cli("serve", *common, "--http-port", ports[0], "--grpc-port", ports[1]),
        "run": cli("run", *common, "--config", str(write_run_config(work))),
    }


def corruption_table(work: Path) -> str:
    """Train one real version with `tollgate run`, then damage each file each way; a Markdown table."""
    trained = work / "trained"
    process = subprocess.run([sys.executable, "-m", "tollgate.cli", "run", "--registry", str(trained / "registry"),
                              "--rows", "1500", "--config", str(write_run_config(trained.parent)), "--json"],
                             capture_output=True, text=True, cwd=ROOT)
    if process.returncode != 0:
        raise RuntimeError(process.stderr[-2000:])
    model = json.loads(process.stdout)["model_name"]
    lines = ["| file | damage | models list | models show | serve | run |", "|---|---|---|---|---|---|"]
    for name in FILES:
        for how in DAMAGE:
            copy = work / f"copy-{name}-{how.replace(' ', '-')}"
            shutil.copytree(trained / "registry", copy)
            row = corruption_row(copy, model, name, how, work)
            cells = []
            for code, output in row.values():
                error = next((line for line in output.splitlines() if line.startswith("error:")), "")
                error = error.replace(str(copy), "…").replace("|", "\\|")
                cells.append(f"{code}" + (f": `{error[:160]}`" if error else ""))
            lines.append(f"| {name} | {how} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def start_s3_server() -> tuple[subprocess.Popen, str]:
    """moto's S3-compatible test server on a free loopback port, credentials in the environment."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.1)
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update({"S3_ENDPOINT": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_REGION": "us-east-1"})
    return process, endpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50, help="Synchronized trials per race case and backend.")
    parser.add_argument("--cli-trials", type=int, default=50, help="Trials per case with two real CLI processes.")
    parser.add_argument("--kills", type=int, default=40, help="kill -9 per target (publish, promote) and backend.")
    parser.add_argument("--tamper-trials", type=int, default=50, help="Tampered files per backend.")
    parser.add_argument("--backends", default="local,s3", help="Comma-separated: local, s3.")
    parser.add_argument("--json", dest="json_path", default=None, help="Also write the results here.")
    parser.add_argument("--corruption-table", action="store_true",
                        help="Only print the corruption table (exit code and error line per command).")
    options = parser.parse_args(argv)
    if options.corruption_table:
        with tempfile.TemporaryDirectory(prefix="tollgate-corrupt-") as tmp:
            print(corruption_table(Path(tmp)))
        return 0
    server = None
    results: dict[str, Any] = {}
    work = Path(tempfile.mkdtemp(prefix="tollgate-chaos-"))
    started = time.perf_counter()
    try:
        for backend in options.backends.split(","):
            if backend == "s3":
                server, _ = start_s3_server()
                from tollgate.s3 import client_from_env

                client_from_env().make_bucket("chaos")
                uri = "s3://chaos/registry"
            else:
                uri = str(work / "registry")
            section = results[backend] = {}
            section["register||register"] = race_register(uri, options.trials, work)
            print(backend, "register||register", section["register||register"], flush=True)
            for case in ALIAS_CASES:
                section[case] = race_aliases(uri, case, options.trials, work)
                print(backend, case, section[case], flush=True)
                section[f"{case} (CLI)"] = race_aliases(uri, case, options.cli_trials, work, via_cli=True)
                print(backend, f"{case} (CLI)", section[f"{case} (CLI)"], flush=True)
            with blind_alias_writes():
                section["control: promote||promote without CAS"] = race_aliases(uri, "promote||promote",
                                                                                 options.trials, work)
            print(backend, "control", section["control: promote||promote without CAS"], flush=True)
            for target in ("publish", "promote"):
                section[f"kill -9 during {target}"] = chaos_kill(uri, target, options.kills, work, seed=7)
                print(backend, f"kill -9 during {target}", section[f"kill -9 during {target}"], flush=True)
            section["tamper"] = tamper_trials(uri, options.tamper_trials, work)
            print(backend, "tamper", section["tamper"], flush=True)
            if server is not None:
                server.terminate()
                server.wait(timeout=10)
                server = None
    finally:
        if server is not None:
            server.terminate()
        shutil.rmtree(work, ignore_errors=True)
    results["seconds"] = round(time.perf_counter() - started, 1)
    if options.json_path:
        Path(options.json_path).write_text(json.dumps(results, indent=2, default=str))
    bad = [(backend, case) for backend, section in results.items() if isinstance(section, dict)
           for case, r in section.items() if not case.startswith("control")
           if r.get("duplicates") or r.get("mixed_files") or r.get("lost_updates") or r.get("problems")
           or r.get("tampered_loads") or r.get("missed_refusals") or r.get("failed_verification")]
    print(json.dumps({"failures": bad, "seconds": results["seconds"]}))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
