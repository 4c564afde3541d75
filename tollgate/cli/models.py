"""``tollgate models``: list, show, promote and roll back registered versions."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from tollgate.cli.common import ConfigOption, JsonOption, ModelNameOption, RegistryOption, console, emit_json, guarded, load

app = typer.Typer(help="Inspect and move model versions and aliases in the registry.", no_args_is_help=True)


def _open(config: Optional[Path], registry: Optional[str], model_name: Optional[str]):
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
def list_versions(config: Optional[Path] = ConfigOption, registry: Optional[str] = RegistryOption,
                  model_name: Optional[str] = ModelNameOption, as_json: bool = JsonOption) -> None:
    """List versions with their test metrics and aliases."""
    reg, model = _open(config, registry, model_name)
    versions = reg.list_versions(model)
    labels = _alias_labels(reg, model)
    if as_json:
        emit_json({"model": model, "registry": reg.uri, "aliases": reg.aliases(model),
                   "versions": [{"version": v.version, "uri": v.uri, "aliases": labels.get(v.version, []),
                                 **v.metadata} for v in versions]})
        return
    if not versions:
        console.print(f"No versions of {model} in {reg.uri} yet; `tollgate run` registers the first.")
        return
    table = Table(title=f"{model} in {reg.uri}", header_style="bold", show_edge=False)
    for column in ("version", "aliases", "created", "candidate", "roc_auc", "pr_auc", "rows"):
        table.add_column(column)
    for v in versions:
        metrics = v.metadata.get("test_metrics", {})
        table.add_row(f"v{v.version}", ", ".join(labels.get(v.version, [])), v.created_at,
                      str(v.metadata.get("candidate_id", "")), f"{metrics.get('roc_auc', float('nan')):.4f}",
                      f"{metrics.get('pr_auc', float('nan')):.4f}", str((v.metadata.get("data") or {}).get("rows", "")))
    console.print(table)


@app.command("show")
@guarded
def show(ref: str = typer.Argument("production", help="Alias (production, previous) or version (v3 or 3)."),
         config: Optional[Path] = ConfigOption, registry: Optional[str] = RegistryOption,
         model_name: Optional[str] = ModelNameOption, as_json: bool = JsonOption) -> None:
    """Show one version's metadata."""
    reg, model = _open(config, registry, model_name)
    version = reg.resolve(model, ref)
    record = {"model": model, "version": version.version, "uri": version.uri,
              "aliases": _alias_labels(reg, model).get(version.version, []), "metadata": version.metadata}
    if as_json:
        emit_json(record)
        return
    meta = version.metadata
    console.print(f"[bold]{model} v{version.version}[/] {record['aliases'] or ''}  {version.uri}")
    console.print(f"created {version.created_at}; run {meta.get('pipeline_run_id')}; code {meta.get('code_version')}")
    console.print(f"candidate {meta.get('candidate_id')} ({meta.get('family')}): {meta.get('params')}")
    console.print("test metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in (meta.get("test_metrics") or {}).items()))
    data = meta.get("data") or {}
    console.print(f"data: {data.get('source')} ({data.get('rows')} rows, {data.get('fingerprint')})")
    console.print(f"replaced champion: {meta.get('replaced_champion')}; gate: {(meta.get('gate') or {}).get('reasons')}")


@app.command("promote")
@guarded
def promote(ref: str = typer.Argument(..., help="Version to make production (v3 or 3)."),
            config: Optional[Path] = ConfigOption, registry: Optional[str] = RegistryOption,
            model_name: Optional[str] = ModelNameOption, as_json: bool = JsonOption) -> None:
    """Point 'production' at a version; the old production becomes 'previous'."""
    reg, model = _open(config, registry, model_name)
    aliases = reg.promote(model, reg.resolve(model, ref).version, reason="manual promote")
    _print_aliases(model, aliases, as_json)


@app.command("rollback")
@guarded
def rollback(config: Optional[Path] = ConfigOption, registry: Optional[str] = RegistryOption,
             model_name: Optional[str] = ModelNameOption, as_json: bool = JsonOption) -> None:
    """Point 'production' back at 'previous'."""
    reg, model = _open(config, registry, model_name)
    _print_aliases(model, reg.rollback(model), as_json)


def _print_aliases(model: str, aliases: dict, as_json: bool) -> None:
    if as_json:
        emit_json({"model": model, "aliases": aliases})
    else:
        console.print(f"{model}: " + ", ".join(f"{a} -> v{r['version']}" for a, r in sorted(aliases.items())))
