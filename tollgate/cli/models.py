"""``tollgate models``: list, show, verify, promote, roll back and garbage-collect registered versions."""

from __future__ import annotations

import math
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from tollgate.cli.common import (
    ConfigOption,
    JsonOption,
    ModelNameOption,
    RegistryOption,
    console,
    emit_json,
    err_console,
    guarded,
    load,
)
from tollgate.errors import TollgateError
from tollgate.metrics import LISTED_METRICS
from tollgate.records import MULTICLASS

app = typer.Typer(help="Inspect and move model versions and aliases in the registry.", no_args_is_help=True)


def _open(config: Path | None, registry: str | None, model_name: str | None):
    from tollgate.registry import open_registry

    cfg = load(config, registry__uri=registry, model_name=model_name)
    return open_registry(cfg.registry.uri), cfg.model_name


def _alias_labels(reg, model: str) -> dict[int, list[str]]:
    labels: dict[int, list[str]] = {}
    for alias, record in reg.aliases(model).items():
        labels.setdefault(int(record["version"]), []).append(alias)
    return labels


@app.command("list")
@guarded
def list_versions(config: Path | None = ConfigOption, registry: str | None = RegistryOption,
                  model_name: str | None = ModelNameOption, as_json: bool = JsonOption) -> None:
    """List versions with their test metrics and aliases."""
    reg, model = _open(config, registry, model_name)
    scanned, problems = reg.scan_versions(model)  # a version it cannot read is a problem, not a crash
    labels = _alias_labels(reg, model)
    versions = [(v, v.record) for v in scanned]
    if as_json:
        emit_json({"model": model, "registry": reg.uri, "aliases": reg.aliases(model),
                   "versions": [{"version": v.version, "uri": v.uri, "aliases": labels.get(v.version, []),
                                 **meta.to_dict(tagged=False)} for v, meta in versions], "unreadable": problems})
        if problems:
            raise typer.Exit(1)
        return
    if not versions and not problems:
        console.print(f"No versions of {escape(model)} in {escape(reg.uri)} yet; `tollgate run` registers the first.")
        return
    table = Table(title=escape(f"{model} in {reg.uri}"), header_style="bold", show_edge=False)
    # Each column is headed by the metric it shows: both names when binary and multiclass versions mix.
    tasks = sorted({meta.task == MULTICLASS for _, meta in versions}) or [False]
    metric_columns = [" / ".join(pair[multiclass] for multiclass in tasks) for pair in LISTED_METRICS]
    for column in ("version", "aliases", "created", "candidate"):
        table.add_column(column)
    for column in metric_columns:
        table.add_column(column, justify="right")
    table.add_column("rows", justify="right")
    for v, meta in versions:
        rows = meta.lineage.rows
        metrics = [_metric(meta.test_metrics, pair[meta.task == MULTICLASS]) for pair in LISTED_METRICS]
        table.add_row(f"v{v.version}", ", ".join(labels.get(v.version, [])), escape(str(v.created_at)),
                      escape(str(meta.candidate_id or "")), *metrics, "" if rows is None else str(rows))
    console.print(table)
    for problem in problems:
        err_console.print(f"[red]error:[/] {escape(problem)}", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(1)


def _metric(metrics, name: str) -> str:
    """A test metric for the table; NaN or absent is '-'."""
    value = metrics.get(name) if isinstance(metrics, dict) else None
    return f"{value:.4f}" if isinstance(value, (int, float)) and math.isfinite(value) else "-"


@app.command("show")
@guarded
def show(ref: str = typer.Argument("production", help="Alias (production, previous) or version (v3 or 3)."),
         config: Path | None = ConfigOption, registry: str | None = RegistryOption,
         model_name: str | None = ModelNameOption, as_json: bool = JsonOption) -> None:
    """Show one version's metadata."""
    reg, model = _open(config, registry, model_name)
    version = reg.resolve(model, ref)  # metadata.json is checked against the manifest before parsing
    integrity = reg.verify(model, version.version)
    if integrity.status == "failed":
        raise TollgateError(integrity.detail)
    meta = version.record
    record = {"model": model, "version": version.version, "uri": version.uri,
              "aliases": _alias_labels(reg, model).get(version.version, []), "metadata": meta.to_dict(tagged=False),
              "integrity": integrity.detail}
    if as_json:
        emit_json(record)
        return

    def line(text: str) -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    console.print(f"[bold]{escape(model)} v{version.version}[/] {escape(str(record['aliases'] or ''))}  "
                  f"{escape(version.uri)}")
    line(f"created {version.created_at}; run {meta.pipeline_run_id}; code {meta.code_version}")
    line(f"candidate {meta.candidate_id} ({meta.family}): {meta.params}")
    line("test metrics: " + ", ".join(f"{k}={_metric(meta.test_metrics, k)}" for k in meta.test_metrics))
    data = meta.lineage
    line(f"data: {data.source} ({data.rows} rows, {data.fingerprint})")
    line(f"replaced champion: {meta.replaced_champion}; gate: {meta.gate.reasons if meta.gate else None}")
    line(f"integrity: {integrity.detail}")


@app.command("promote")
@guarded
def promote(ref: str = typer.Argument(..., help="Version to make production (v3 or 3)."),
            config: Path | None = ConfigOption, registry: str | None = RegistryOption,
            model_name: str | None = ModelNameOption, as_json: bool = JsonOption) -> None:
    """Point 'production' at a version; the old production becomes 'previous'."""
    reg, model = _open(config, registry, model_name)
    aliases = reg.promote(model, reg.resolve(model, ref).version, reason="manual promote")
    _print_aliases(model, aliases, as_json)


@app.command("rollback")
@guarded
def rollback(config: Path | None = ConfigOption, registry: str | None = RegistryOption,
             model_name: str | None = ModelNameOption, as_json: bool = JsonOption) -> None:
    """Point 'production' back at 'previous'."""
    reg, model = _open(config, registry, model_name)
    _print_aliases(model, reg.rollback(model), as_json)


@app.command("verify")
@guarded
def verify(ref: str | None = typer.Argument(None, help="Alias (production, previous) or version (v3 or 3). "
                                               "Default: production; see --all."),
           all_versions: bool = typer.Option(False, "--all", help="Verify every version of the model."),
           config: Path | None = ConfigOption, registry: str | None = RegistryOption,
           model_name: str | None = ModelNameOption, as_json: bool = JsonOption) -> None:
    """Check every file of a version against the sha256 and size recorded when it was registered.

    Exit code 1 if any file does not match (or cannot be read); versions registered before
    digests are reported as unverified and do not fail.
    """
    reg, model = _open(config, registry, model_name)
    if all_versions and ref is not None:
        raise TollgateError("give either a version or --all, not both")
    numbers = reg.version_numbers(model) if all_versions else [_resolve_number(reg, model, ref or "production")]
    results = [reg.verify(model, n) for n in numbers]
    if as_json:
        emit_json({"model": model, "registry": reg.uri,
                   "versions": [{"version": r.version, "status": r.status, "detail": r.detail} for r in results]})
    else:
        if not results:
            console.print(f"No versions of {escape(model)} in {escape(reg.uri)} yet.")
        for r in results:
            colour = {"ok": "green", "unverified": "yellow", "failed": "red"}[r.status]
            console.print(f"{escape(model)} v{r.version}: [{colour}]{r.status}[/] {escape(r.detail)}",
                          highlight=False, soft_wrap=True)
    if any(r.status == "failed" for r in results):
        raise typer.Exit(1)


def _resolve_number(reg, model: str, ref: str) -> int:
    # Resolve the alias or number without reading metadata: verify must work on a corrupt version.
    import re

    from tollgate.registry import ALIASES

    if ref in ALIASES:
        number = reg.alias_version(model, ref)
        if number is None:
            raise TollgateError(f"{model} has no {ref!r} alias yet in {reg.uri}")
        return number
    match = re.fullmatch(r"v?(\d+)", ref)
    if not match:
        raise TollgateError(f"{ref!r} is neither an alias ({', '.join(ALIASES)}) nor a version like v3")
    number = int(match.group(1))
    if not reg.has_version(model, number):
        raise TollgateError(f"{model} v{number} does not exist in {reg.uri}")
    return number


@app.command("gc")
@guarded
def gc(older_than: str = typer.Option("1h", "--older-than", help="Only leftovers older than this: 90s, 30m, 1h, 2d."),
       dry_run: bool = typer.Option(False, "--dry-run", help="List what would be removed; remove nothing."),
       config: Path | None = ConfigOption, registry: str | None = RegistryOption,
       as_json: bool = JsonOption) -> None:
    """Remove crashed writers' leftovers: staging directories and incomplete versions.

    Complete versions and alias targets are never touched. On S3 an incomplete version's
    claim object stays, so its number is never handed out again.
    """
    from tollgate.registry import open_registry

    seconds = _parse_duration(older_than)
    cfg = load(config, registry__uri=registry)
    reg = open_registry(cfg.registry.uri)
    report = reg.gc(older_than_seconds=seconds, dry_run=dry_run)
    if as_json:
        emit_json({"registry": reg.uri, "dry_run": dry_run, "older_than_seconds": seconds,
                   "removed": report.removed, "kept_recent": report.kept_recent})
        return
    verb = "would remove" if dry_run else "removed"
    for name in report.removed:
        console.print(f"{verb} {escape(name)}", highlight=False)
    console.print(f"{len(report.removed)} leftover(s) {verb}; {len(report.kept_recent)} younger than "
                  f"{escape(older_than)} kept (a writer may still be working on them).", highlight=False)


def _parse_duration(text: str) -> float:
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise TollgateError(f"--older-than {text!r}: use a number with s, m, h or d (for example 1h)")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def _print_aliases(model: str, aliases: dict, as_json: bool) -> None:
    if as_json:
        emit_json({"model": model, "aliases": aliases})
    else:
        console.print(escape(f"{model}: " + ", ".join(f"{a} -> v{r['version']}" for a, r in sorted(aliases.items()))),
                      highlight=False)
