"""``swinir models`` (list, ``--json``, ``--verify``) and ``swinir download NAME... | --all``."""

from __future__ import annotations

from typing import Any

import typer
from rich import box
from rich.table import Table

from ..download import (
    CacheCheck,
    cached_path,
    is_cached,
    source_host,
    verified_weights_path,
    verify_cached,
)
from ..errors import DownloadError, SourceUnreachableError, SwinIRError, UsageError
from ..registry import ModelEntry, cache_dir, load_registry
from ..resolve import named_entry
from .options import DownloadAll, Help, Json, ModelNames, Quiet, Verify, Version
from .output import Output


def register(app: typer.Typer) -> None:
    """Add the ``models`` and ``download`` commands to ``app``."""
    app.command("models", add_help_option=False)(models_command)
    app.command("download", add_help_option=False)(download_command)


def models_command(
    json: Json = False, verify: Verify = False, version: Version = False, show_help: Help = False
) -> None:
    """List the pretrained models: name, task, setting, size, whether downloaded and whether pinned.

    Models download on first use (or with `swinir download`) into SWINIR_CACHE_DIR (default
    ~/.cache/swinir); SWINIR_REGISTRY=extra.toml adds your own entries or a mirror.

    [b]Examples[/]

      swinir models

      swinir models --verify          [dim]# re-hash what is downloaded[/]

      swinir models --json | jq '.models[].name'
    """
    as_json = json
    output = Output(json_lines=as_json)
    registry = load_registry()
    checks = {name: verify_cached(entry) for name, entry in registry.items()} if verify else {}
    if as_json:
        records = [_record(entry, checks.get(name)) for name, entry in registry.items()]
        output.result({"cache_dir": str(cache_dir()), "models": records})
    else:
        output.data(_table(registry, checks, verify, output.out.width))
        output.info(f"cache: {cache_dir()}")
    corrupt = [name for name, check in checks.items() if check.problem]
    if corrupt:
        raise DownloadError(
            f"{len(corrupt)} cached model file(s) failed verification and were deleted: {', '.join(corrupt)}"
        )


def download_command(
    names: ModelNames = None,
    download_all: DownloadAll = False,
    quiet: Quiet = False,
    version: Version = False,
    show_help: Help = False,
) -> None:
    """Download models into the cache, verify them and prepare their fast-loading copies.

    Interrupted downloads resume; a file whose sha256 does not match is deleted, never used. Once a
    host cannot be reached, its other models are not tried (they are listed as not fetched).

    [b]Examples[/]

      swinir download real-x4 classical-x2

      swinir download --all
    """
    output = Output(quiet=quiet)
    if download_all and names:
        raise UsageError("name the models to download or pass --all, not both")
    if not download_all and not names:
        raise UsageError(
            "name the models to download (swinir download real-x4; `swinir models` lists them), or pass --all"
        )
    registry = load_registry()
    entries = list(registry.values()) if download_all else [named_entry(name) for name in names or []]
    failed = []
    unreachable: set[str] = set()  # hosts that said so once: their other models are not tried
    for entry in entries:
        if source_host(entry) in unreachable and not is_cached(entry):
            failed.append(entry.name)
            continue
        try:
            _download_one(entry, output)
        except SourceUnreachableError as error:
            output.error(str(error))
            unreachable.add(error.host)
            failed.append(entry.name)
        except SwinIRError as error:
            output.error(str(error))
            failed.append(entry.name)
    if failed:
        raise DownloadError(
            f"{len(failed)} of {len(entries)} model(s) could not be fetched: {', '.join(failed)}"
        )


def _download_one(entry: ModelEntry, output: Output) -> None:
    was_cached = is_cached(entry)
    with output.progress(entry.name, entry.size, unit="bytes") as task:
        verified_weights_path(entry, progress=task.update, events=output.download_notice)
    path = cached_path(entry)
    done = "was already downloaded" if was_cached else f"downloaded {_megabytes(path.stat().st_size)}"
    output.info(f"{entry.name}: {done} and verified ({path})")


#: Below this many columns the table leaves out the descriptions (``--json`` has them), so that every
#: name, which is what users type, stays whole.
WIDE_TABLE = 120


def _table(registry: dict[str, ModelEntry], checks: dict[str, CacheCheck], verify: bool, width: int) -> Table:
    wide = width >= WIDE_TABLE
    headers = ["name", "task", "setting", "images", "size", "downloaded"]
    if wide:
        headers[4:4] = ["params"]
        headers.append("pinned")
    if verify:
        headers.append("verified")
    table = Table(
        title="SwinIR models", title_justify="left", box=box.SIMPLE_HEAD if not wide else box.HEAVY_HEAD
    )
    for header in headers:
        table.add_column(header, justify="right" if header in ("params", "size") else "left", no_wrap=True)
    if wide:
        table.add_column("description", overflow="fold", min_width=12)
    for name, entry in registry.items():
        cells = {
            "name": name,
            "task": entry.task,
            "setting": entry.level_label,
            "images": "gray" if entry.channels == 1 else "color",
            "params": f"{entry.parameters / 1e6:.1f}M" if entry.parameters else "?",
            "size": _megabytes(entry.size) if entry.size else "?",
            "downloaded": "yes" if is_cached(entry) else "-",
            "pinned": "yes" if entry.pinned else "[yellow]unpinned[/]",
        }
        if verify:
            cells["verified"] = _verified_label(checks[name])
        row = [cells[header] for header in headers]
        table.add_row(*row, *([entry.description] if wide else []))
    return table


def _verified_label(check: CacheCheck) -> str:
    if check.problem:
        return "[red]corrupt, deleted[/]"
    return "[green]ok[/]" if check.cached else "-"


def _record(entry: ModelEntry, check: CacheCheck | None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "name": entry.name,
        "task": entry.task,
        entry.kind.level_key: entry.level,
        "channels": entry.channels,
        "architecture": entry.architecture,
        "parameters": entry.parameters,
        "size": entry.size,
        "sha256": entry.sha256,
        "pinned": entry.pinned,
        "url": entry.url,
        "file": entry.file,
        "description": entry.description,
        "downloaded": is_cached(entry),
        "path": str(cached_path(entry)),
    }
    if check is not None:
        record["verified"] = None if not check.cached else check.problem is None
        record["problem"] = check.problem
    return record


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
