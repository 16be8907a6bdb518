"""Where the pretrained teacher files come from, where they are kept, and how to get them.

A registry names the official DINO backbones (and the DINOv2 /14 backbones the teacher loader
can convert) with their download URL and, where one could be verified, their SHA-256. Files
live in one cache folder (:func:`cache_dir`); :func:`find_weights` turns a name or a path into
a file, :func:`fetch` downloads a registry entry into the cache, atomically and checksummed.

Machines without internet are the normal case on clusters, so every failure says which URL to
download elsewhere and exactly where to put the file.

Checksum provenance: Meta publishes no checksums for these files and their names carry no
torch.hub hash prefix. The SHA-256 values below are those of byte-for-byte copies on Hugging
Face (Git LFS pointers), each seen in at least two independent mirrors that agree on hash and
size; ``checksum_source`` names them. ``dino_vits16`` has no verifiable checksum: its ``sha256``
is None, and :func:`fetch` reports the hash it computed instead of checking it.

Examples
--------
>>> [w.name for w in list_weights()]  # doctest: +SKIP
['dino_vits16', 'dino_vitb16', 'dinov2_vits14', 'dinov2_vitb14']
>>> path = find_weights("dino_vitb16")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from dineuro.errors import InputError
from dineuro.io.atomic import atomic_file

CACHE_ENV = "DINEURO_CACHE"
DEFAULT_CACHE = Path("~/.cache/dineuro/weights")
DOWNLOAD_TIMEOUT = 10.0
CHUNK_BYTES = 1 << 20


class UnverifiedWeightsWarning(UserWarning):
    """A downloaded file had no known checksum; the warning carries the hash that was computed."""


@dataclass(frozen=True)
class WeightsEntry:
    """One downloadable backbone.

    Parameters
    ----------
    name : str
        Registry name users type (``dino_vits16``).
    arch : str
        Architecture in the usual notation (``ViT-S/16``).
    url : str
        Official download URL.
    sha256 : str or None
        SHA-256 of the file, or None when no verifiable value is known.
    size : int or None
        File size in bytes, or None when unknown.
    checksum_source : str
        Where ``sha256`` and ``size`` come from.
    """

    name: str
    arch: str
    url: str
    sha256: str | None
    size: int | None
    checksum_source: str

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class WeightsInfo(WeightsEntry):
    """A registry entry as :func:`list_weights` reports it: where it would be, and if it is."""

    path: Path
    present: bool


_DINO = "https://dl.fbaipublicfiles.com/dino"
_DINOV2 = "https://dl.fbaipublicfiles.com/dinov2"
_UNVERIFIED = "none found: no published checksum and no mirror copy located"

REGISTRY: dict[str, WeightsEntry] = {entry.name: entry for entry in (
    WeightsEntry("dino_vits16", "ViT-S/16",
                 f"{_DINO}/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth",
                 sha256=None, size=None, checksum_source=_UNVERIFIED),
    WeightsEntry("dino_vitb16", "ViT-B/16",
                 f"{_DINO}/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth",
                 sha256="bf34ad0f424b9029b593e8dc3ed553bf26e88bcba0d32bf3e62a6209cb64c85e",
                 size=343242485,
                 checksum_source="Git LFS pointers of Hugging Face mirrors HoraceYan/FlyGCL "
                                 "(DINO/dino_vitbase16_pretrain.pth) and Xiaomabufei/lumos"),
    WeightsEntry("dinov2_vits14", "DINOv2 ViT-S/14",
                 f"{_DINOV2}/dinov2_vits14/dinov2_vits14_pretrain.pth",
                 sha256="b938bf1bc15cd2ec0feacfe3a1bb553fe8ea9ca46a7e1d8d00217f29aef60cd9",
                 size=88283115,
                 checksum_source="Git LFS pointers of Hugging Face mirrors junjiexv/dinov2_vit "
                                 "and msdkhairi/vit_sam"),
    WeightsEntry("dinov2_vitb14", "DINOv2 ViT-B/14",
                 f"{_DINOV2}/dinov2_vitb14/dinov2_vitb14_pretrain.pth",
                 sha256="0b8b82f85de91b424aded121c7e1dcc2b7bc6d0adeea651bf73a13307fad8c73",
                 size=346378731,
                 checksum_source="Git LFS pointers of Hugging Face mirrors msdkhairi/vit_sam, "
                                 "HoraceYan/FlyGCL and qubvel-hf/omniglue"),
)}


def cache_dir() -> Path:
    """Folder holding downloaded teacher files.

    ``$DINEURO_CACHE`` when set (the folder itself, not a parent of it), otherwise
    ``~/.cache/dineuro/weights``. The folder is not created here; :func:`fetch` creates it.
    """
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else DEFAULT_CACHE.expanduser()


def list_weights() -> list[WeightsInfo]:
    """Every registry entry, with its cache path and whether the file is there."""
    folder = cache_dir()
    return [WeightsInfo(**asdict(entry), path=folder / entry.file_name,
                        present=(folder / entry.file_name).is_file())
            for entry in REGISTRY.values()]


def find_weights(name_or_path: str | os.PathLike) -> Path:
    """Turn a registry name or a file path into an existing weights file.

    An existing file wins over a registry name of the same spelling. A registry name resolves
    to its file in :func:`cache_dir`; the file's size is checked when known (cheap, catches a
    truncated copy), its checksum is not (see :func:`fetch`).

    Raises
    ------
    InputError
        The name is known but the file is not in the cache (the message gives the URL to download
        and the exact path to place it at), the size is wrong, or the argument is neither a file nor
        a known name.
    """
    candidate = Path(name_or_path).expanduser()
    if candidate.is_file():
        return candidate
    entry = REGISTRY.get(str(name_or_path))
    if entry is None:
        what = "a folder, not a weights file" if candidate.exists() else (
            "neither an existing file nor a known weights name "
            f"({', '.join(REGISTRY)})")
        raise InputError(f"is {what}.", candidate)
    target = cache_dir() / entry.file_name
    if not target.is_file():
        raise InputError(f"the {entry.name} teacher weights ({entry.arch}) are not in the cache; "
                         f"download {entry.url} and place the file at {target}, or pass the "
                         "path of a copy you already have.")
    _check_size(target, entry)
    return target


def fetch(name: str, to: str | os.PathLike | None = None, timeout: float = DOWNLOAD_TIMEOUT,
          progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Download the registry entry ``name`` into folder ``to`` (default :func:`cache_dir`).

    The file is streamed into a temporary file beside the target, checked (SHA-256 when known,
    size when known) and only then renamed into place, so an interrupted or corrupt download
    never leaves a file that looks complete. A file already at the target is checked and
    returned without downloading. There are no retries: an unreachable host fails within about
    ``timeout`` seconds.

    Parameters
    ----------
    name : str
        Registry name (see :func:`list_weights`).
    to : str or os.PathLike, optional
        Destination folder.
    timeout : float, optional
        Seconds to wait for the connection and for each read.
    progress : callable, optional
        Called as ``progress(bytes_done, total_bytes_or_None)`` after each chunk, for the command
        line's progress bar.

    Returns
    -------
    Path
        Path of the verified file.

    Raises
    ------
    InputError
        Unknown name; download failed (the message names the URL and where to place a copy made
        elsewhere); checksum or size mismatch (nothing is kept).

    Warns
    -----
    UnverifiedWeightsWarning
        The entry has no known SHA-256; the message gives the hash of the downloaded file so it can
        be compared with a trusted source.
    """
    entry = _entry(name)
    target = Path(to if to is not None else cache_dir()).expanduser() / entry.file_name
    if target.is_file():
        _check_file(target, entry, file_sha256(target), target.stat().st_size)
        return target
    made = _missing_folders(target.parent)
    try:
        with atomic_file(target) as partial:
            digest, size = _download(entry.url, partial, target, timeout, progress)
            _check_file(target, entry, digest, size)
    except BaseException:
        for folder in made:  # innermost first; a failed fetch leaves the tree as it found it
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    return target


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, innermost first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file as lowercase hex, read in chunks (teacher files are hundreds of MB)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


# --- helpers ------------------------------------------------------------------------------

def _entry(name: str) -> WeightsEntry:
    if name not in REGISTRY:
        raise InputError(f"unknown teacher weights {name!r}; known names: "
                         f"{', '.join(REGISTRY)}.")
    return REGISTRY[name]


def _download(url: str, partial: Path, target: Path, timeout: float,
              progress: Callable[[int, int | None], None] | None) -> tuple[str, int]:
    """Stream ``url`` into ``partial``; return its SHA-256 and size."""
    digest, done = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, partial.open("wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError,
            ConnectionError) as err:
        reason = getattr(err, "reason", None) or err
        raise InputError(f"could not download {url} ({reason}); download it on a machine with "
                         f"internet and place it at {target} (or pass --teacher PATH).") from err
    return digest.hexdigest(), done


def _check_file(path: Path, entry: WeightsEntry, digest: str, size: int) -> None:
    """Raise on a size or checksum mismatch; warn with the hash when none is known."""
    _check_size(path, entry, size)
    if entry.sha256 is None:
        warnings.warn(UnverifiedWeightsWarning(
            f"{path}: no verified SHA-256 is known for {entry.name}; this file's SHA-256 is "
            f"{digest} ({size} bytes), compare it with a source you trust."), stacklevel=3)
    elif digest != entry.sha256:
        raise InputError(f"has SHA-256 {digest}, expected {entry.sha256} for {entry.url}; the "
                         "file is corrupt or not the official one (a download is discarded, "
                         "a cached copy should be deleted).", path)


def _check_size(path: Path, entry: WeightsEntry, size: int | None = None) -> None:
    size = path.stat().st_size if size is None else size
    if entry.size is not None and size != entry.size:
        raise InputError(f"is {size} bytes, expected {entry.size} for {entry.url}; the file is "
                         "truncated or not the official one.", path)

