"""Weights registry: lookup, cache folder, and downloads that verify and never leave debris.

No network: downloads read ``file://`` URLs (urllib serves them) or hit a patched urlopen.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from dineuro.errors import InputError
from dineuro.models.weights import (
    DOWNLOAD_TIMEOUT,
    REGISTRY,
    UnverifiedWeightsWarning,
    WeightsEntry,
    cache_dir,
    fetch,
    file_sha256,
    find_weights,
    list_weights,
)

PAYLOAD = b"not really a checkpoint, but bytes with a known hash\n" * 100
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
PAYLOAD_SIZE = len(PAYLOAD)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("DINEURO_CACHE", str(folder))
    return folder


@pytest.fixture
def upstream(tmp_path) -> Path:
    """A file standing in for the server copy, named like a release."""
    path = tmp_path / "server" / "tiny_pretrain.pth"
    path.parent.mkdir()
    path.write_bytes(PAYLOAD)
    return path


def _register(monkeypatch, url, sha256=PAYLOAD_SHA256, size=PAYLOAD_SIZE):
    entry = WeightsEntry("tiny", "ViT-T/16", url, sha256=sha256, size=size,
                         checksum_source="test")
    monkeypatch.setitem(REGISTRY, "tiny", entry)
    return entry


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_registry_names_the_official_dino_backbones():
    vits, vitb = REGISTRY["dino_vits16"], REGISTRY["dino_vitb16"]
    assert vits.file_name == "dino_deitsmall16_pretrain.pth"
    assert vitb.file_name == "dino_vitbase16_pretrain.pth"
    for entry in REGISTRY.values():
        assert entry.url.startswith("https://dl.fbaipublicfiles.com/dino")
        assert entry.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", entry.sha256)
        assert entry.checksum_source


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    assert cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("DINEURO_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "dineuro" / "weights"


def test_list_weights_reports_presence(cache):
    assert not any(info.present for info in list_weights())
    cache.mkdir()
    (cache / "dino_deitsmall16_pretrain.pth").write_bytes(b"x")
    present = {info.name: info.present for info in list_weights()}
    assert present["dino_vits16"] and not present["dino_vitb16"]
    info = next(i for i in list_weights() if i.name == "dino_vitb16")
    assert (info.arch, info.path) == ("ViT-B/16", cache / "dino_vitbase16_pretrain.pth")


def test_find_weights_accepts_a_path_or_a_cached_name(cache, upstream):
    assert find_weights(upstream) == upstream
    assert find_weights(str(upstream)) == upstream
    cache.mkdir()
    (cache / "dino_deitsmall16_pretrain.pth").write_bytes(b"x")
    assert find_weights("dino_vits16") == cache / "dino_deitsmall16_pretrain.pth"


def test_find_weights_says_where_to_put_a_missing_file(cache):
    with pytest.raises(InputError) as err:
        find_weights("dino_vitb16")
    assert REGISTRY["dino_vitb16"].url in str(err.value)
    assert str(cache / "dino_vitbase16_pretrain.pth") in str(err.value)


def test_find_weights_rejects_a_truncated_copy(cache):
    cache.mkdir()
    (cache / "dino_vitbase16_pretrain.pth").write_bytes(b"short")
    with pytest.raises(InputError, match="is 5 bytes, expected 343242485"):
        find_weights("dino_vitb16")


def test_find_weights_rejects_unknown_names(tmp_path):
    with pytest.raises(InputError, match="known weights name.*dino_vits16"):
        find_weights("dino_vitl16")
    with pytest.raises(InputError, match="a folder"):
        find_weights(tmp_path)


def test_fetch_downloads_verifies_and_lands_atomically(monkeypatch, cache, upstream):
    _register(monkeypatch, upstream.as_uri())
    seen = []
    path = fetch("tiny", progress=lambda done, total: seen.append(done))
    assert path == cache / "tiny_pretrain.pth"
    assert path.read_bytes() == PAYLOAD
    assert _leftovers(cache) == ["tiny_pretrain.pth"]
    assert seen[-1] == len(PAYLOAD)
    assert file_sha256(path) == hashlib.sha256(PAYLOAD).hexdigest()


def test_fetch_keeps_a_verified_copy_without_downloading(monkeypatch, cache, upstream):
    _register(monkeypatch, upstream.as_uri())
    fetch("tiny")

    def offline(*args, **kwargs):
        raise AssertionError("should not download again")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    assert fetch("tiny") == cache / "tiny_pretrain.pth"


def test_fetch_refuses_a_corrupt_cached_copy(monkeypatch, cache, upstream):
    _register(monkeypatch, upstream.as_uri())
    cache.mkdir()
    (cache / "tiny_pretrain.pth").write_bytes(PAYLOAD[:-1] + b"?")
    with pytest.raises(InputError, match="should be deleted"):
        fetch("tiny")


def test_fetch_to_an_explicit_folder(monkeypatch, upstream, tmp_path):
    _register(monkeypatch, upstream.as_uri())
    assert fetch("tiny", to=tmp_path / "here") == tmp_path / "here" / "tiny_pretrain.pth"


def test_a_failed_fetch_removes_the_folders_it_made(monkeypatch, upstream, tmp_path):
    _register(monkeypatch, upstream.as_uri(), sha256="0" * 64)
    with pytest.raises(InputError, match="expected 0000"):
        fetch("tiny", to=tmp_path / "new" / "deeper")
    assert not (tmp_path / "new").exists()


def test_fetch_with_a_wrong_checksum_keeps_nothing(monkeypatch, cache, upstream):
    _register(monkeypatch, upstream.as_uri(), sha256="0" * 64)
    with pytest.raises(InputError, match="expected 0000"):
        fetch("tiny")
    assert _leftovers(cache) == []


def test_fetch_with_a_wrong_size_keeps_nothing(monkeypatch, cache, upstream):
    _register(monkeypatch, upstream.as_uri(), sha256=None, size=len(PAYLOAD) + 1)
    with pytest.raises(InputError, match="bytes, expected"):
        fetch("tiny")
    assert _leftovers(cache) == []


def test_fetch_without_known_checksum_reports_the_hash(monkeypatch, upstream):
    _register(monkeypatch, upstream.as_uri(), sha256=None)
    with pytest.warns(UnverifiedWeightsWarning, match=hashlib.sha256(PAYLOAD).hexdigest()):
        path = fetch("tiny")
    assert path.read_bytes() == PAYLOAD


@pytest.mark.parametrize("failure", [
    urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")),
    urllib.error.URLError("[Errno -3] Temporary failure in name resolution"),
    TimeoutError("timed out"),
])
@pytest.mark.parametrize("timeout", [2, None], ids=["given", "default"])
def test_unreachable_server_fails_after_one_bounded_attempt_and_says_where_to_put_the_file(
        monkeypatch, cache, failure, timeout):
    # How long a failure takes is bounded by what is handed to urlopen: one attempt with a
    # finite timeout, no retries, no pause (checked here instead of timing the call).
    entry = _register(monkeypatch, "https://example.invalid/tiny_pretrain.pth")
    calls, pauses = [], []

    def unreachable(url, timeout):
        calls.append(timeout)
        raise failure

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    monkeypatch.setattr(time, "sleep", pauses.append)
    with pytest.raises(InputError) as err:
        fetch("tiny") if timeout is None else fetch("tiny", timeout=timeout)
    assert calls == [timeout or DOWNLOAD_TIMEOUT] and 0 < calls[0] < math.inf and pauses == []
    message = str(err.value)
    assert message.startswith(f"could not download {entry.url} (")
    assert "\n" not in message and message.endswith("."), message  # one sentence
    assert str(cache / "tiny_pretrain.pth") in message and "--teacher PATH" in message
    assert _leftovers(cache) == []


def test_a_broken_file_url_fails_the_same_way(monkeypatch, cache, tmp_path):
    _register(monkeypatch, (tmp_path / "missing.pth").as_uri())
    with pytest.raises(InputError, match="could not download .*place it at"):
        fetch("tiny")
    assert _leftovers(cache) == []


def test_fetch_rejects_unknown_names():
    with pytest.raises(InputError, match="unknown teacher weights 'dino_vitl16'"):
        fetch("dino_vitl16")

