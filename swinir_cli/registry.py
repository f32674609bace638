"""The model registry: pretrained checkpoints known by a short name, and where they are cached.

The registry is data: ``weights.toml`` (top level of the repository, shipped inside the package as
``swinir_cli/weights.toml``) holds one ``[models.NAME]`` table per checkpoint; its header comment documents
the keys and the naming scheme. ``SWINIR_REGISTRY=extra.toml`` adds entries or replaces whole entries, and
may redirect every packaged entry to an internal ``mirror``. ``SWINIR_CACHE_DIR`` moves the cache.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from swinir_cli.errors import ModelNotFoundError, UsageError
from swinir_cli.reading import read_regular
from swinir_cli.tasks import TASKS, Task, level_keys, task_named

REMOTE_SCHEMES = ("http", "https", "hf")
#: Longest registry file read (the packaged one takes 14 KB).
REGISTRY_MAX_BYTES = 16 << 20

_INT_KEYS = ("channels", "size", "parameters")  # and every task's level key
_STR_KEYS = ("task", "url", "sha256", "description", "architecture", "file")
_REQUIRED_KEYS = ("task", "url")
_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]*")
_SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ModelEntry:
    """One downloadable checkpoint of the registry.

    ``url`` is normalised: ``http(s)://``, ``hf://owner/repo[@revision]/path`` or ``file://`` (local paths,
    relative ones resolved against the TOML file that named them). ``level`` is the task's setting: the
    upscale factor, the noise sigma or the JPEG quality (the registry's ``scale``, ``sigma`` or ``quality``
    key, as the task's level key says). ``sha256`` is ``None`` for an unpinned entry; ``description`` is
    ``""`` when the registry gives none (only task, level and url are required).
    """

    name: str
    task: str
    url: str
    description: str
    file: str
    level: int
    channels: int = 3
    sha256: str | None = None
    size: int | None = None
    parameters: int | None = None
    architecture: str | None = None

    @property
    def pinned(self) -> bool:
        """Whether the registry states the file's sha256 (otherwise the first download's hash is used)."""
        return self.sha256 is not None

    @property
    def kind(self) -> Task:
        """The task the model does."""
        return task_named(self.task)

    @property
    def scale(self) -> int:
        """The model's upscale factor: its level for an upscaling task, else 1."""
        return self.level if self.kind.upscales else 1

    @property
    def level_label(self) -> str:
        """The task's setting for people: ``x4``, ``sigma 25`` or ``quality 10``."""
        return self.kind.level_label(self.level)

    @property
    def is_remote(self) -> bool:
        """Whether fetching the file needs the network (http, https or the Hugging Face Hub)."""
        return urlsplit(self.url).scheme in REMOTE_SCHEMES


def cache_dir() -> Path:
    """The directory holding downloaded weights: ``$SWINIR_CACHE_DIR`` (``~`` and ``~user`` expanded),
    else ``$XDG_CACHE_HOME/swinir`` when that is an absolute path (the XDG rule: a relative one is
    ignored), else ``~/.cache/swinir``. It is not created here.

    Raises:
        UsageError: ``~user`` names no user, or no home directory can be found for the default.
    """
    configured = os.environ.get("SWINIR_CACHE_DIR")
    if configured:
        return _expand_user(configured, "SWINIR_CACHE_DIR")
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else _expand_user("~", "the default cache") / ".cache"
    return base / "swinir"


def _expand_user(text: str, what: str) -> Path:
    """``text`` with a leading ``~`` or ``~user`` expanded; one line naming ``what`` when it cannot be."""
    expanded = os.path.expanduser(text)
    if expanded.startswith("~"):
        user = text[1:].split("/", 1)[0].split(os.sep, 1)[0]
        reason = f"there is no user '{user}'" if user else "there is no home directory ($HOME is not set)"
        raise UsageError(
            f"{what} {text!r}: {reason} to expand '~{user}' for; set SWINIR_CACHE_DIR to a full path"
        )
    return Path(expanded)


def load_registry() -> dict[str, ModelEntry]:
    """Every known model by name: the packaged ``weights.toml``, then the ``$SWINIR_REGISTRY`` file.

    Raises :class:`UsageError` naming the file, entry and key when a registry file is unreadable or an
    entry is malformed (unknown key, wrong type, value out of range, missing required key).
    """
    packaged_text, packaged_label = _packaged_registry_text()
    entries = _parse_registry(packaged_text, packaged_label, base_dir=None)
    extra = os.environ.get("SWINIR_REGISTRY")
    if extra:
        entries = _apply_override(entries, Path(extra).expanduser())
    return entries


def get_model(name: str, registry: dict[str, ModelEntry] | None = None) -> ModelEntry:
    """The entry called ``name``; raises :class:`ModelNotFoundError` suggesting close names otherwise."""
    models = load_registry() if registry is None else registry
    if name in models:
        return models[name]
    close = close_names(name, list(models))
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ModelNotFoundError(f"no model named '{name}' in the registry{hint} (`swinir models` lists them)")


def close_names(name: str, names: list[str], limit: int = 3) -> list[str]:
    """Up to ``limit`` of ``names`` that ``name`` was probably meant to be: the closest spellings, else the
    closest of those with the same setting (``nope-x4`` -> the ``-x4`` models)."""
    close = difflib.get_close_matches(name, names, n=limit)
    if close or "-" not in name:
        return close
    level = name.rsplit("-", 1)[1]
    same_level = [other for other in names if f"-{level}-" in f"{other}-"]
    return difflib.get_close_matches(name, same_level, n=limit, cutoff=0)


def choose_model(
    task: str,
    level: int | str | None,
    *,
    channels: int = 3,
    registry: dict[str, ModelEntry] | None = None,
) -> ModelEntry:
    """The model a restoration command uses when no ``--model`` is given.

    The task's preferred names come first (:meth:`~swinir_cli.tasks.Task.preferred_names`): for
    ``upscale`` the real-world GAN model (``real-xS``: photos are not bicubic-downsampled), then the
    classical one (``classical-xS``); for ``denoise`` and ``dejpeg`` ``denoise-gray-N`` or
    ``denoise-color-N`` as ``channels`` (1 gray, 3 color) says. Only a task that picks its model per image
    matches ``channels`` (every upscale model is color). Entries added through ``$SWINIR_REGISTRY`` with a
    matching level are used when no preferred name exists.

    Raises :class:`UsageError` when the task is unknown, the level is missing or no registered model has
    it (the message lists the levels that exist; a word such as ``auto`` is a level none has).
    """
    kind = _task(task)
    if level is None:
        raise UsageError(f"choosing a {task} model needs a {kind.level_key}")
    matching = task_models(kind, level, channels, registry)
    for preferred in kind.preferred_names(level, channels):
        if preferred in matching:
            return matching[preferred]
    if matching:
        return matching[min(matching)]
    raise UsageError(_no_model_message(kind, level, channels, task_models(kind, None, channels, registry)))


def task_models(
    task: Task,
    level: int | str | None = None,
    channels: int | None = None,
    registry: dict[str, ModelEntry] | None = None,
) -> dict[str, ModelEntry]:
    """The registered models of ``task`` by name; of ``level`` and, for a task that picks a gray or colour
    model per image, of ``channels``, when these are given."""
    models = load_registry() if registry is None else registry
    return {
        name: entry
        for name, entry in models.items()
        if entry.task == task.name
        and level in (None, entry.level)
        and (channels is None or not task.per_image_channels or entry.channels == channels)
    }


def _task(name: str) -> Task:
    try:
        return task_named(name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _no_model_message(task: Task, level: int | str, channels: int, models: dict[str, ModelEntry]) -> str:
    kind = (" gray" if channels == 1 else " color") if task.per_image_channels else ""
    listed = ", ".join(str(value) for value in sorted({entry.level for entry in models.values()})) or "none"
    key = task.level_key
    return (
        f"no registered{kind} {task.name} model has {key} {level}; {key} values available: {listed} "
        "(or pass --weights FILE)"
    )


def _packaged_registry_text() -> tuple[str, str]:
    packaged = resources.files("swinir_cli").joinpath("weights.toml")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8"), str(packaged)
    source_checkout = Path(__file__).resolve().parents[1] / "weights.toml"
    return _read_text(source_checkout), str(source_checkout)


def _read_text(path: Path) -> str:
    try:
        return read_regular(path, REGISTRY_MAX_BYTES).decode("utf-8")
    except OSError as err:
        raise UsageError(f"cannot read registry file {path}: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise UsageError(
            f"cannot read registry file {path}: it is not UTF-8 text "
            f"(byte {err.start} is {err.object[err.start]:#04x}); a registry is a TOML file"
        ) from err


def _apply_override(entries: dict[str, ModelEntry], path: Path) -> dict[str, ModelEntry]:
    label = str(path)
    text = _read_text(path)
    document = _load_toml(text, label)
    mirror = document.get("mirror")
    merged = dict(entries)
    if mirror is not None:
        if not isinstance(mirror, str) or not mirror:
            raise UsageError(f"{label}: mirror must be a non-empty string, got {mirror!r}")
        base = _normalise_url(mirror.rstrip("/") + "/", path.parent, label, "mirror")
        merged = {
            name: replace(entry, url=base.rstrip("/") + "/" + quote(entry.file))
            for name, entry in merged.items()
        }
    merged.update(_entries_from_document(document, label, base_dir=path.parent, allowed_top=("mirror",)))
    return merged


def _parse_registry(text: str, label: str, base_dir: Path | None) -> dict[str, ModelEntry]:
    return _entries_from_document(_load_toml(text, label), label, base_dir=base_dir, allowed_top=())


def _load_toml(text: str, label: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{label} is not valid TOML: {err}") from err


def _entries_from_document(
    document: dict[str, Any], label: str, base_dir: Path | None, allowed_top: tuple[str, ...]
) -> dict[str, ModelEntry]:
    unknown = sorted(set(document) - {"models", *allowed_top})
    if unknown:
        raise UsageError(f"{label}: unknown top-level key '{unknown[0]}' (expected [models.NAME] tables)")
    models = document.get("models", {})
    if not isinstance(models, dict):
        raise UsageError(f"{label}: 'models' must be a table of [models.NAME] tables")
    return {name: _entry_from_table(name, table, label, base_dir) for name, table in models.items()}


def _entry_from_table(name: str, table: Any, label: str, base_dir: Path | None) -> ModelEntry:
    where = f"{label}: [models.{name}]"
    if not _NAME_PATTERN.fullmatch(name):
        raise UsageError(f"{where}: a model name uses lowercase letters, digits, '.', '-' and '_' only")
    if not isinstance(table, dict):
        raise UsageError(f"{where} must be a table of keys")
    _check_keys(table, where)
    if table["task"] not in TASKS:
        raise UsageError(f"{where} task: expected one of {', '.join(TASKS)}, got {table['task']!r}")
    task = TASKS[table["task"]]
    _check_levels(table, task, where)
    channels = table.get("channels", 3)
    if channels not in (1, 3):
        raise UsageError(f"{where} channels: expected 1 (gray) or 3 (color), got {channels}")
    for key in ("size", "parameters"):
        if key in table and table[key] < 1:
            raise UsageError(f"{where} {key}: expected a positive integer, got {table[key]}")
    sha256 = table.get("sha256")
    if sha256 is not None:
        sha256 = sha256.lower()
        if not _SHA256_PATTERN.fullmatch(sha256):
            raise UsageError(f"{where} sha256: expected 64 hexadecimal digits, got {table['sha256']!r}")
    url = _normalise_url(table["url"], base_dir, label, f"[models.{name}] url")
    file = table.get("file") or _file_name_from_url(url, where)
    if "/" in file or "\\" in file or file in (".", ".."):
        raise UsageError(f"{where} file: expected a plain file name, got {file!r}")
    return ModelEntry(
        name=name,
        task=task.name,
        url=url,
        description=table.get("description", ""),
        file=file,
        level=table[task.level_key],
        channels=channels,
        sha256=sha256,
        size=table.get("size"),
        parameters=table.get("parameters"),
        architecture=table.get("architecture"),
    )


def _check_keys(table: dict[str, Any], where: str) -> None:
    int_keys = {*_INT_KEYS, *level_keys()}
    known = int_keys | set(_STR_KEYS)
    for key, value in table.items():
        if key not in known:
            raise UsageError(f"{where}: unknown key '{key}' (known keys: {', '.join(sorted(known))})")
        if key in int_keys and (not isinstance(value, int) or isinstance(value, bool)):
            raise UsageError(f"{where} {key}: expected an integer, got {value!r}")
        if key in _STR_KEYS and not isinstance(value, str):
            raise UsageError(f"{where} {key}: expected a string, got {value!r}")
    for key in _REQUIRED_KEYS:
        if key not in table:
            raise UsageError(f"{where}: missing required key '{key}'")


def _check_levels(table: dict[str, Any], task: Task, where: str) -> None:
    level_key = task.level_key
    if level_key not in table:
        raise UsageError(f"{where}: missing required key '{level_key}' for a {task.name} model")
    for key in level_keys():
        if key != level_key and key in table:
            raise UsageError(f"{where}: key '{key}' does not apply to a {task.name} model")
    low, high = task.level_range
    if not low <= table[level_key] <= high:
        raise UsageError(f"{where} {level_key}: expected {low}..{high}, got {table[level_key]}")


def _normalise_url(url: str, base_dir: Path | None, label: str, key: str) -> str:
    parts = urlsplit(url)
    if parts.scheme in (*REMOTE_SCHEMES, "file"):
        if parts.scheme == "hf" and len(_hub_path_parts(url)) < 3:
            raise UsageError(f"{label}: {key}: expected hf://owner/repo/path/to/file, got {url!r}")
        return url
    if len(parts.scheme) > 1:
        raise UsageError(f"{label}: {key}: unsupported URL scheme '{parts.scheme}' in {url!r}")
    path = Path(url).expanduser()
    if not path.is_absolute():
        if base_dir is None:
            raise UsageError(f"{label}: {key}: a relative path needs a registry file to be relative to")
        path = base_dir / path
    uri = path.resolve().as_uri()
    return uri + "/" if url.endswith("/") else uri


def _hub_path_parts(url: str) -> list[str]:
    return [part for part in url.removeprefix("hf://").split("/") if part]


def _file_name_from_url(url: str, where: str) -> str:
    name = unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    if not name:
        raise UsageError(f'{where}: cannot take a file name from url {url!r}; add file = "NAME"')
    return name
