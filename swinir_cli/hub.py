"""The Hugging Face Hub as a source of weights: ``hf://owner/repo[@revision]/path/file`` entries.

huggingface_hub downloads, resumes, locks and caches such files itself; this module only asks it, and
says what it answered. Checking the file against its entry is :mod:`swinir_cli.download`'s business.
huggingface_hub is imported on use: it takes a third of a second, wasted on plain URLs.
"""

from __future__ import annotations

from pathlib import Path

from .errors import DownloadError
from .registry import ModelEntry
from .transfer import HostUnreachable, describe_error

__all__ = ["HUB_HOST", "download_from_hub", "hub_cached_file", "is_hub", "split_hub_url"]

#: Where ``hf://`` sources come from.
HUB_HOST = "huggingface.co"


def is_hub(entry: ModelEntry) -> bool:
    """Whether the entry's file comes from the Hugging Face Hub (an ``hf://`` URL)."""
    return entry.url.startswith("hf://")


def split_hub_url(url: str) -> tuple[str, str | None, str]:
    """``hf://owner/repo[@revision]/path/file`` -> (``owner/repo``, revision or ``None``, ``path/file``)."""
    owner, repo, *path = [part for part in url.removeprefix("hf://").split("/") if part]
    repo, _, revision = repo.partition("@")
    return f"{owner}/{repo}", revision or None, "/".join(path)


def hub_cached_file(entry: ModelEntry) -> Path | None:
    """The entry's file in the Hub's own cache, ``None`` when it is not there."""
    import huggingface_hub

    repo_id, revision, filename = split_hub_url(entry.url)
    found = huggingface_hub.try_to_load_from_cache(repo_id, filename, revision=revision)
    return Path(found) if isinstance(found, str) else None


def download_from_hub(entry: ModelEntry, *, offline: bool) -> Path:
    """The entry's file in the Hub's cache, downloaded first when needed (never when ``offline``).

    Raises:
        HostUnreachable: the file is not in the Hub's cache, and the Hub was not asked (``offline``) or
            does not answer.
        DownloadError: the Hub answered with an error, or its cache cannot be written.
    """
    import huggingface_hub
    from huggingface_hub import errors as hub_errors

    repo_id, revision, filename = split_hub_url(entry.url)
    try:
        found = huggingface_hub.hf_hub_download(
            repo_id, filename, revision=revision, local_files_only=offline
        )
    except hub_errors.LocalEntryNotFoundError as err:
        raise HostUnreachable(HUB_HOST, "the Hugging Face Hub does not answer") from err
    except (hub_errors.HfHubHTTPError, OSError) as err:
        raise DownloadError(
            f"cannot download model '{entry.name}' from {entry.url}: {describe_error(err)}"
        ) from err
    return Path(found)
