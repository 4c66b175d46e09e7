"""Teacher logits computed once and kept on disk, keyed by a hash of each text.

Stage 1 of cached distillation: the teacher runs over the transfer set once; stage 2 trains the
student from these logits with no teacher forward pass in the loop. Keying rows by text (not by
token ids) is what lets teacher and student use different tokenizers.

A cache file records which teacher produced it (a hash of its weights, config, vocabulary and the
max length it read) and which texts it covers. A different teacher rebuilds it from scratch; new
texts under the same teacher are computed and the file rewritten for the current data.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_info

from distillery.teacher import Teacher

__all__ = ["CachedLogits", "cache_path", "data_fingerprint", "read_cached_logits", "teacher_logits", "text_key"]

VERSION = 1


def text_key(text: str) -> str:
    """The cache key of one text: 128-bit BLAKE2b of its UTF-8 bytes."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def data_fingerprint(keys: Iterable[str]) -> str:
    """Hash of the set of text keys: order and duplicates do not change which logits are needed."""
    h = hashlib.sha256()
    for k in sorted(set(keys)):
        h.update(k.encode())
    return h.hexdigest()


def cache_path(cache_dir: str | Path, teacher_source: str, name: str) -> Path:
    """One file per teacher location and data split, e.g. ``SST2DataModule-train-<hash>.pt``."""
    where = Path(teacher_source).expanduser()
    where = str(where.resolve()) if where.exists() else teacher_source
    return Path(cache_dir) / f"{name}-{hashlib.sha256(where.encode()).hexdigest()[:16]}.pt"


@dataclass
class CachedLogits:
    """Teacher logits aligned with the requested texts.

    Args:
        logits: (N, C) float32, row i for text i.
        status: ``hit`` (read from disk), ``partial`` (same teacher, only new texts computed) or
            ``built`` (no usable cache, or a different teacher: every text computed).
        computed: how many distinct texts the teacher ran on.
        meta: what the file records about the teacher (source, fingerprint, parameters, labels).
    """

    logits: torch.Tensor
    status: str
    computed: int = 0
    meta: dict = field(default_factory=dict)


def _read(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        entry = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a damaged cache is rebuilt, never trusted
        rank_zero_info(f"teacher cache {path} unreadable ({e}); rebuilding")
        return None
    return entry if isinstance(entry, dict) and entry.get("version") == VERSION else None


def _align(entry: dict, keys: list[str], path: Path) -> torch.Tensor:
    index = {k: i for i, k in enumerate(entry["keys"])}
    missing = sum(k not in index for k in keys)
    if missing:
        raise KeyError(f"teacher cache {path}: {missing} of {len(keys)} texts are not in it")
    return entry["logits"][torch.tensor([index[k] for k in keys], dtype=torch.long)]


def _write(path: Path, entry: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename: a crash or another process never sees a half-written cache.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(entry, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_cached_logits(path: str | Path, texts: list[str]) -> CachedLogits:
    """Read logits that another process has just written (DDP ranks other than zero); no teacher needed.

    Raises:
        FileNotFoundError, KeyError: the file is missing or lacks some of the texts.
    """
    path = Path(path)
    entry = _read(path)
    if entry is None:
        raise FileNotFoundError(f"teacher cache {path}: missing or unreadable")
    return CachedLogits(_align(entry, [text_key(t) for t in texts], path), "hit", 0, entry["meta"])


def teacher_logits(
    path: str | Path, texts: list[str], teacher: Teacher, batch_size: int = 64, max_length: int = 128,
    precision: str = "32",
) -> CachedLogits:
    """Return the teacher's logits for ``texts``, running it only where the cache at ``path`` cannot answer.

    Args:
        path: the cache file (see :func:`cache_path`).
        texts: N raw texts; duplicates are computed once.
        teacher: the model that must have produced the cached rows.
        batch_size: teacher batch size for the texts it has to run on.
        max_length: the teacher's truncation length (part of what identifies the cached logits).
        precision: the teacher's forward precision, ``32`` or ``bf16`` (also part of what identifies them).
    """
    path = Path(path)
    keys = [text_key(t) for t in texts]
    # float32 logits keep the old identity, so caches written before precision existed stay valid.
    identity = f"{teacher.fingerprint}:{max_length}" + ("" if precision == "32" else f":{precision}")
    producer = hashlib.sha256(identity.encode()).hexdigest()
    data = data_fingerprint(keys)
    entry = _read(path)
    if entry is not None and entry["teacher"] == producer and entry["data"] == data:
        rank_zero_info(f"teacher cache hit: {path} ({len(entry['keys']):,} texts)")
        return CachedLogits(_align(entry, keys, path), "hit", 0, entry["meta"])

    known: dict[str, torch.Tensor] = {}
    if entry is not None and entry["teacher"] == producer:
        known = dict(zip(entry["keys"], entry["logits"]))
    first: dict[str, str] = {}
    for k, t in zip(keys, texts):
        first.setdefault(k, t)
    todo = [k for k in first if k not in known]
    status = "partial" if known else "built"
    rank_zero_info(f"teacher cache {status}: running {teacher.source} on {len(todo):,} texts -> {path}")
    fresh = teacher.logits([first[k] for k in todo], batch_size=batch_size, max_length=max_length, precision=precision)
    known.update(zip(todo, fresh))
    unique = list(first)
    meta = {
        "teacher_source": teacher.source,
        "teacher_fingerprint": teacher.fingerprint,
        "max_length": max_length,
        "precision": precision,
        "num_parameters": teacher.num_parameters,
        "label_names": list(teacher.label_names),
    }
    logits = torch.stack([known[k] for k in unique]) if unique else torch.empty(0, teacher.num_labels)
    entry = {"version": VERSION, "teacher": producer, "data": data, "meta": meta, "keys": unique, "logits": logits}
    _write(path, entry)
    return CachedLogits(_align(entry, keys, path), status, len(todo), meta)
