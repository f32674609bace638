"""Model resolution, once for every command: a name or a path, checked against the task, then fetched.

:func:`check_request` settles, before any image is read or any model loaded, everything a request can be
refused for (``--model`` with ``--weights``, an unknown name, a model of another task or another scale,
a level no model has) and returns the :class:`ModelFacts` that planning needs (the factor that names the
outputs, the window that tiles must fit). :class:`ModelChooser` then fetches, loads and caches the
:class:`~swinir_cli.pipeline.Restorer` each image needs; :func:`open_restorer` does the same for a request
that names one model (``swinir eval``), and :func:`load_restorer` for a library user's name or path.

A model that cannot be had (offline, unreachable, refused, corrupt) raises :class:`ModelUnavailableError`:
every later image would fail the same way, so the batch stops with that one error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .download import DownloadListener, verified_weights_path
from .errors import ModelNotFoundError, ModelUnavailableError, SwinIRError, UsageError
from .imageio import LoadedImage
from .registry import ModelEntry, choose_model, get_model, load_registry
from .settings import RestoreSettings
from .tasks import AUTO, TASKS, Task

if TYPE_CHECKING:  # PyTorch is imported with the first checkpoint read, so that `swinir models`, help and
    from .pipeline import Restorer  # refused requests start without it (about 1.4 s of each start)

__all__ = [
    "ModelChooser",
    "ModelFacts",
    "ModelRequest",
    "check_request",
    "load_restorer",
    "named_entry",
    "open_restorer",
]


@dataclass(frozen=True)
class ModelRequest:
    """What a command asked for; the model itself may be chosen per image.

    ``weights`` (a local checkpoint) or ``model`` (a registry name) fix the model; otherwise it is chosen
    by ``task`` and ``level`` (the task's setting: the scale, sigma or quality; ``"auto"`` where the task
    estimates it from each image) and, for a task that picks gray or colour models (denoising, JPEG), by
    each image's channels. An upscaling task's level is the factor a named model must have.

    Raises:
        UsageError: both ``model`` and ``weights``, or an unknown task.
    """

    task: str
    model: str | None = None
    weights: Path | None = None
    level: int | str | None = None
    img_range: float | None = None

    def __post_init__(self) -> None:
        if self.model is not None and self.weights is not None:
            raise UsageError("--model and --weights both name the model; give one")
        if self.task not in TASKS:
            raise UsageError(f"unknown task {self.task!r}; expected one of {', '.join(TASKS)}")

    @property
    def kind(self) -> Task:
        return TASKS[self.task]


@dataclass(frozen=True)
class ModelFacts:
    """What is known of the model before any image: ``label`` and ``channels`` are None when the model is
    chosen per image; ``scale`` (1 for denoising and JPEG) and ``window`` are always known."""

    scale: int
    window: int
    label: str | None = None
    channels: int | None = None
    entry: ModelEntry | None = None


def named_entry(name: str) -> ModelEntry:
    """The registry entry ``name``; an unknown name is a usage error (it suggests close names)."""
    try:
        return get_model(name)
    except ModelNotFoundError as exc:
        raise UsageError(str(exc)) from None


def check_request(request: ModelRequest) -> ModelFacts:
    """Refuse what a request cannot do, before any image or model is loaded (a checkpoint given with
    ``--weights`` is read for its configuration, not built).

    Raises:
        UsageError: unknown model name, a model of another task or scale, a level no model has.
        CheckpointError: the ``--weights`` file is not a readable SwinIR checkpoint.
    """
    task = request.kind
    if request.weights is not None:
        from .checkpoint import detect_config, read_state_dict

        config = detect_config(read_state_dict(request.weights), request.img_range)
        label = str(request.weights)
        _check_factor(request, config.upscale, label)
        return ModelFacts(config.upscale, config.window_size, label, config.in_chans)
    if request.model is not None:
        entry = named_entry(request.model)
        if entry.task != task.name:
            raise UsageError(
                f"model '{entry.name}' is a {entry.task} model; use `swinir {entry.task}` to run it"
            )
        _check_factor(request, entry.scale, f"model '{entry.name}'")
        return ModelFacts(entry.scale, task.window, entry.name, entry.channels, entry)
    if not task.per_image_channels:  # the level alone fixes the model
        entry = choose_model(task.name, request.level or task.default_level)
        return ModelFacts(entry.scale, task.window, entry.name, entry.channels, entry)
    if request.level != AUTO:
        choose_model(task.name, request.level)  # refuses a level no model has
    return ModelFacts(1, task.window)


def _check_factor(request: ModelRequest, factor: int, label: str) -> None:
    if request.kind.upscales:
        if factor == 1:
            others = " or ".join(f"`swinir {task.name}`" for task in TASKS.values() if not task.upscales)
            raise UsageError(f"{label} does not upscale (x1); use {others}")
        if request.level is not None and request.level != factor:
            key = request.kind.level_key
            raise UsageError(
                f"{label} upscales x{factor}, not x{request.level}; drop --{key} or pick another"
            )
    elif factor != 1:
        upscaling = next(task.name for task in TASKS.values() if task.upscales)
        raise UsageError(f"{label} is a x{factor} upscaling model; use `swinir {upscaling}` to run it")


def open_restorer(
    request: ModelRequest,
    settings: RestoreSettings,
    *,
    on_warning: Callable[[str], None] | None = None,
    events: DownloadListener | None = None,
) -> tuple[str, Restorer]:
    """(label, restorer) of a request that fixes one model (``model``, ``weights`` or an upscale scale).

    Raises:
        UsageError: see :func:`check_request`; also a request that leaves the model to each image.
        ModelUnavailableError: the model cannot be fetched or loaded.
    """
    facts = check_request(request)
    if facts.label is None:
        raise UsageError(f"name the {request.task} model (MODEL or --weights)")
    chooser = ModelChooser(request, settings, on_warning=on_warning, download_events=events)
    return chooser.fixed()


def load_restorer(
    name_or_path: str | Path,
    settings: RestoreSettings = RestoreSettings(),
    *,
    on_warning: Callable[[str], None] | None = None,
) -> Restorer:
    """A :class:`Restorer` of a registry model (see ``swinir models``; downloaded and verified once) or of
    a local ``.pth``/``.safetensors`` checkpoint (a :class:`~pathlib.Path`, or a string that is no
    registry name).

    Raises:
        UsageError: neither a registry name nor an existing file (close names are suggested).
        SwinIRError: the model cannot be fetched or loaded (see :mod:`swinir_cli.errors`).
    """
    if isinstance(name_or_path, str) and (
        name_or_path in load_registry() or not Path(name_or_path).is_file()
    ):
        path = verified_weights_path(named_entry(name_or_path))
    else:
        path = Path(name_or_path)
    return _new_restorer(path, settings, on_warning=on_warning)


def _new_restorer(
    path: Path,
    settings: RestoreSettings,
    *,
    img_range: float | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> Restorer:
    """The checkpoint at ``path`` loaded into a :class:`Restorer` (see
    :func:`swinir_cli.checkpoint.load_model`)."""
    from .checkpoint import load_model
    from .pipeline import Restorer

    model = load_model(path, img_range=img_range)
    return Restorer(model, settings, on_warning=on_warning, weights_path=path)


class ModelChooser:
    """Picks, fetches, loads and caches the :class:`Restorer` each image needs.

    Denoising and JPEG models come in gray and colour versions and in levels; without a named model the
    one matching the image's channels (and its estimated noise or JPEG quality, with ``auto``) is used.

    Args:
        request: see :class:`ModelRequest`.
        settings: how every restorer computes (device, tile, ...).
        on_warning: given to every restorer (see :class:`Restorer`).
        download_events: receives the bytes, retries and waits of a download
            (:data:`swinir_cli.download.DownloadEvent`).
        notice: receives one line whenever a model is chosen automatically.
    """

    def __init__(
        self,
        request: ModelRequest,
        settings: RestoreSettings = RestoreSettings(),
        *,
        on_warning: Callable[[str], None] | None = None,
        download_events: DownloadListener | None = None,
        notice: Callable[[str], None] | None = None,
    ) -> None:
        self.request = request
        self.settings = settings
        self.on_warning = on_warning
        self.download_events = download_events
        self.notice = notice
        self._loaded: dict[str, Restorer] = {}

    def fixed(self) -> tuple[str, Restorer]:
        """(label, restorer) of the one model the request names (no image needed)."""
        request = self.request
        if request.weights is not None:
            return self._restorer(str(request.weights), request.weights)
        entry = check_request(request).entry
        assert entry is not None, "fixed() needs a request that names its model"
        return self._restorer(entry.name, self._fetch(entry))

    def restorer_for(self, image: LoadedImage) -> tuple[str, Restorer]:
        """(model label, restorer) for ``image``.

        Raises:
            ImageError: the level is ``auto`` and cannot be estimated from this image.
            UsageError: the model does not fit the request (task, scale).
            ModelUnavailableError: the model cannot be fetched or loaded.
        """
        request = self.request
        if request.weights is not None or request.model is not None or not request.kind.per_image_channels:
            return self.fixed()
        level = self._level(request.level, image)
        entry = choose_model(request.task, level, channels=image.channels)
        return self._restorer(entry.name, self._fetch(entry))

    def _fetch(self, entry: ModelEntry) -> Path:
        try:
            return verified_weights_path(entry, events=self.download_events)
        except UsageError:
            raise
        except SwinIRError as exc:
            raise ModelUnavailableError(str(exc)) from exc

    def _restorer(self, label: str, path: Path) -> tuple[str, Restorer]:
        if label not in self._loaded:
            try:
                restorer = _new_restorer(
                    path, self.settings, img_range=self.request.img_range, on_warning=self.on_warning
                )
            except UsageError:
                raise
            except SwinIRError as exc:
                raise ModelUnavailableError(str(exc)) from exc
            _check_factor(self.request, restorer.scale, label)
            self._loaded[label] = restorer
        return label, self._loaded[label]

    def _level(self, value: int | str | None, image: LoadedImage) -> int | str | None:
        if value != AUTO:
            return value
        task = self.request.kind
        estimate = task.estimate_level(image)
        if self.notice is not None:
            self.notice(f"{image.name}: {estimate.found}, using the {task.level_key} {estimate.level} model")
        return int(estimate.level)
