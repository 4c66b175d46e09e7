"""What a run was made from: file hashes, the data files a config reads, the code version, and stage keys."""

from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import yaml

__all__ = ["code_version", "data_inputs", "digest", "file_sha256", "hash_inputs", "now"]

REPO = Path(__file__).resolve().parents[1]


def now() -> str:
    """UTC time to the second, ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_inputs(candidates: list[str]) -> dict[str, str]:
    """sha256 of every candidate that is an existing file, or of the files directly inside a directory."""
    out: dict[str, str] = {}
    for c in candidates:
        p = Path(c)
        try:
            if p.is_file():
                out[str(p)] = file_sha256(p)
            elif p.is_dir():
                for f in sorted(q for q in p.iterdir() if q.is_file() and not q.name.startswith(".")):
                    out[str(f)] = file_sha256(f)
        except OSError:  # a name that only looks like a path (too long, unreadable)
            continue
    return out


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def data_inputs(config: str, args: list[str]) -> list[str]:
    """Every string under the YAML's ``data:`` section and every ``--data...`` override value: the data files."""
    with open(config) as f:
        data = (yaml.safe_load(f) or {}).get("data", {})
    overrides = [a.split("=", 1)[1] for a in args if a.startswith("--data.") and "=" in a]
    return _strings(data) + overrides


def code_version() -> dict:
    """The git commit of this checkout and whether it had uncommitted changes."""
    def git(*a):
        return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, timeout=30)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode == 0:
            dirty = bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())
            return {"git_commit": head.stdout.strip(), "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        return {"package_version": version("distillery")}
    except PackageNotFoundError:
        return {"git_commit": None, "note": "not a git checkout and not installed"}


def digest(payload: dict) -> str:
    """A short, order-independent hash of a JSON-able payload (a stage's key)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]
