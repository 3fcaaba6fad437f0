"""Named MovieLens sets: downloaded on first use into the cache, checked against their MD5 and
unzipped there; the bundled ml-latest-small is used in place."""

from __future__ import annotations

import hashlib
import re
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from pipeline.data.source import (
    BUNDLED,
    NAMED_SETS,
    PINNED_MD5,
    DatasetConfig,
    DatasetError,
    bundled_path,
    data_folder,
    repo_root,
)

_COMPLETE_MARKER = ".complete"


def fetch(name: str, config: DatasetConfig) -> Path:
    """Local folder of a named set: download, verify the MD5, unzip and cache as needed.

    Layout of ``cache_dir``: ``<name>.zip`` (kept), ``<name>.zip.md5`` (for sets
    without a pinned MD5) and ``<name>/`` (the unzipped archive, with a ``.complete``
    marker written last). A zip whose MD5 does not match is never unzipped.
    """
    if name == BUNDLED:
        path = bundled_path()
        if not path.is_dir():
            raise DatasetError(f"the bundled {BUNDLED} is missing: expected it at {path}")
        return path
    if name not in NAMED_SETS:
        raise DatasetError(f"unknown data set {name!r}; known: {', '.join(NAMED_SETS)}")

    cache = _cache_dir(config)
    target = cache / name
    if (target / _COMPLETE_MARKER).is_file():
        return data_folder(target)

    zip_path = cache / f"{name}.zip"
    url = f"{config.base_url.rstrip('/')}/{name}.zip"
    if not zip_path.is_file():
        if not config.download:
            raise DatasetError(_manual_help(name, zip_path, url, "downloading is switched off"))
        cache.mkdir(parents=True, exist_ok=True)
        _download(url, zip_path, config, name)
    expected = _expected_md5(name, zip_path, url, config)
    actual = md5_of(zip_path)
    if actual != expected:
        raise DatasetError(
            f"checksum mismatch for {zip_path}: MD5 is {actual}, the published MD5 is {expected}. "
            f"The file is corrupt or not the GroupLens release; it was not used. Delete it and "
            f"run again to download it afresh, or put a good copy from {url} there."
        )
    _unzip(zip_path, target, expected)
    return data_folder(target)


def md5_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _cache_dir(config: DatasetConfig) -> Path:
    path = Path(config.cache_dir).expanduser()
    return path if path.is_absolute() else repo_root() / path


def _manual_help(name: str, zip_path: Path, url: str, why: str) -> str:
    extra = (
        ""
        if name in PINNED_MD5
        else f" together with its checksum file {url}.md5 as {zip_path}.md5"
    )
    return (
        f"MovieLens set {name!r} is not in the cache and cannot be downloaded ({why}). "
        f"Download {url} by hand and put it at {zip_path}{extra}; it is checked and unzipped on the next run."
    )


def _download(url: str, dest: Path, config: DatasetConfig, name: str) -> None:
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=config.timeout) as resp, open(part, "wb") as out:
            shutil.copyfileobj(resp, out, length=1 << 20)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        part.unlink(missing_ok=True)
        raise DatasetError(_manual_help(name, dest, url, f"download failed: {exc}")) from exc
    part.replace(dest)


def _expected_md5(name: str, zip_path: Path, url: str, config: DatasetConfig) -> str:
    if name in PINNED_MD5:
        return PINNED_MD5[name]
    md5_path = zip_path.with_name(zip_path.name + ".md5")
    if not md5_path.is_file():
        if not config.download:
            raise DatasetError(
                f"{zip_path} is present but its checksum file is not: put {url}.md5 at {md5_path} "
                f"(downloading is switched off)"
            )
        _download(url + ".md5", md5_path, config, name)
    text = md5_path.read_text(encoding="ascii", errors="replace").strip()
    match = re.match(r"^([0-9a-fA-F]{32})\b", text)
    if not match:
        md5_path.unlink(missing_ok=True)
        raise DatasetError(
            f"{md5_path} does not hold an MD5 (starts {text[:40]!r}); it was removed"
        )
    return match.group(1).lower()


def _unzip(zip_path: Path, target: Path, md5: str) -> None:
    tmp = target.with_name(target.name + ".unzipping")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with zipfile.ZipFile(zip_path) as archive:
            root = tmp.resolve()
            for member in archive.namelist():
                dest = (tmp / member).resolve()
                if dest != root and root not in dest.parents:
                    raise DatasetError(f"{zip_path} holds an unsafe path {member!r}; not unzipped")
            bad = archive.testzip()
            if bad is not None:
                raise DatasetError(f"{zip_path} is corrupt (bad CRC in {bad}); not unzipped")
            archive.extractall(tmp)
    except zipfile.BadZipFile as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DatasetError(f"{zip_path} is not a readable zip: {exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    data_folder(tmp)  # fails clearly if the archive holds no MovieLens layout
    shutil.rmtree(target, ignore_errors=True)
    tmp.replace(target)
    (target / _COMPLETE_MARKER).write_text(md5 + "\n", encoding="ascii")
