"""Byte-reproducible Keras model files.

A ``.keras`` file is a zip archive whose ``metadata.json`` carries the wall-clock
``date_saved`` and whose entries carry the time they were written, so two trainings
that give identical weights still give different files, and a file hash (the model
card's, the prediction rule's check) could not tell a retrained model from the same
one. :func:`normalise_keras_archive` rewrites the archive with those two clocks fixed;
everything Keras reads back (config, weights, assets, keras_version) is untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

# The earliest time a zip entry can hold: what reproducible-build tools use.
FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
METADATA_ENTRY = "metadata.json"
# Kept (Keras' loader reads the file) but no longer a clock: the value says why.
FIXED_DATE_SAVED = "not recorded (reproducible file)"
_CHUNK = 1 << 20


def _fixed_metadata(data: bytes) -> bytes:
    meta = json.loads(data.decode("utf-8"))
    if "date_saved" in meta:
        meta["date_saved"] = FIXED_DATE_SAVED
    return json.dumps(meta, sort_keys=True).encode("utf-8")


def normalise_keras_archive(path: str | Path) -> Path:
    """Rewrite a saved ``.keras`` archive in place (via a temporary file and a rename)
    with a fixed ``date_saved`` and fixed entry times; entry order and compression kept."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w") as dst:
            for info in src.infolist():
                data = src.read(info)
                if info.filename == METADATA_ENTRY:
                    data = _fixed_metadata(data)
                entry = zipfile.ZipInfo(info.filename, date_time=FIXED_ZIP_TIME)
                entry.compress_type = info.compress_type
                entry.external_attr = info.external_attr
                dst.writestr(entry, data)
        os.chmod(tmp, path.stat().st_mode & 0o7777)  # mkstemp's 0600 would make the model private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (the model card names its model file by it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
