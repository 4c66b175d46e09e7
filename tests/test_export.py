"""Export stage on a tiny BERT: sources (HF dir, checkpoints, LoRA adapter), parity, int8, the gate, cards, batch prediction."""

from __future__ import annotations

import csv
import json
import shutil
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import NEGATIVE, POSITIVE, REPO, write_sst2

LABELS = ["negative", "positive"]


def train_tiny_classifier(base: Path, target: Path) -> Path:
    """Fit the tiny BERT to the fixture sentences so that its predictions are confident (fp32 accuracy 100%)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=2, id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})
    tokenizer = AutoTokenizer.from_pretrained(base)
    enc = tokenizer(POSITIVE + NEGATIVE, padding=True, return_tensors="pt")
    y = torch.tensor([1] * len(POSITIVE) + [0] * len(NEGATIVE))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(60):
        opt.zero_grad()
        model(**enc, labels=y).loss.backward()
        opt.step()
    model.eval().save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def sst2_files(tmp_path_factory) -> Path:
    return write_sst2(tmp_path_factory.mktemp("sst2_export"))


@pytest.fixture(scope="session")
def trained_hf(tiny_bert, tmp_path_factory) -> Path:
    return train_tiny_classifier(tiny_bert, tmp_path_factory.mktemp("trained") / "hf")


@pytest.fixture(scope="session")
def exported(trained_hf, sst2_files, tmp_path_factory) -> tuple[Path, dict]:
    from export.cli import export_main

    out = tmp_path_factory.mktemp("exported") / "out"
    summary = export_main(["--source", str(trained_hf), "--output_dir", str(out), "--eval_file", str(sst2_files / "dev.tsv")])
    return out, summary


def zero_int8_weights(model_path: Path) -> None:
    """Corrupt a quantized model: every int8/uint8 weight becomes 0, so all inputs get the same logits."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(model_path))
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype in (np.int8, np.uint8) and arr.size > 1:
            init.CopyFrom(numpy_helper.from_array(np.zeros_like(arr), init.name))
    onnx.save(model, str(model_path))


# -- the full export from an HF directory ---------------------------------------------------------


def test_export_writes_parity_checked_onnx_int8_and_cards(exported):
    import onnx

    out, summary = exported
    assert summary["parity"]["max_abs_diff"] < 1e-4 and summary["parity"]["n_texts"] == 8
    model = onnx.load(str(out / "onnx" / "model.onnx"))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    inputs = {i.name: [d.dim_param for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert inputs["input_ids"] == ["batch_size", "sequence_length"] and "attention_mask" in inputs
    assert [o.name for o in model.graph.output] == ["logits"]
    q = summary["quantization"]
    assert q["mode"] == "dynamic" and q["per_channel"] and q["isa"] in ("avx512_vnni", "avx512", "avx2", "arm64")
    ev = summary["evaluation"]
    assert ev["fp32_accuracy"] == 1.0 and ev["passed"] and ev["n_rows"] == 8 and ev["batch_size"] == 1
    assert (out / "onnx-int8" / "model_quantized.onnx").stat().st_size < (out / "onnx" / "model.onnx").stat().st_size
    # The fp32 graph is transformer-fused (one Attention node per layer) before parity and quantization.
    fusion = summary["onnx"]["fusion"]
    ops = Counter(n.op_type for n in model.graph.node)
    assert fusion["fused"] and fusion["operators"]["Attention"] == ops["Attention"] == 2  # the tiny BERT's layers
    assert ops["SkipLayerNormalization"] and ops["EmbedLayerNormalization"] == 1 and not ops["Softmax"]
    assert fusion["nodes_after"] == len(model.graph.node) < fusion["nodes_before"]
    int8_ops = Counter(n.op_type for n in onnx.load(str(out / "onnx-int8" / "model_quantized.onnx")).graph.node)
    assert int8_ops["QAttention"] == 2
    assert "nodes after transformer fusion" in (out / "onnx-int8" / "README.md").read_text()
    for sub in ("hf", "onnx", "onnx-int8"):
        card = (out / sub / "README.md").read_text()
        assert "100.00%" in card and "dev.tsv" in card, sub
    assert "avx" in (out / "onnx-int8" / "README.md").read_text() or "arm64" in (out / "onnx-int8" / "README.md").read_text()
    assert json.loads((out / "export.json").read_text())["evaluation"]["int8_accuracy"] == ev["int8_accuracy"]


def test_exported_dirs_load_with_optimum_in_a_pipeline(exported):
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer, pipeline

    out, _ = exported
    texts = POSITIVE + NEGATIVE
    labels = {}
    for sub in ("onnx", "onnx-int8"):
        model = ORTModelForSequenceClassification.from_pretrained(out / sub)
        clf = pipeline("text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(out / sub))
        labels[sub] = [r["label"] for r in clf(texts)]
    assert labels["onnx"] == ["positive"] * len(POSITIVE) + ["negative"] * len(NEGATIVE)
    agree = np.mean([a == b for a, b in zip(labels["onnx"], labels["onnx-int8"])])
    assert agree >= 0.85


def test_lean_encoder_matches_the_transformers_tokenizer(exported):
    from transformers import AutoTokenizer

    from export.runtime import TokenEncoder

    tok = AutoTokenizer.from_pretrained(exported[0] / "onnx")
    encode = TokenEncoder(exported[0] / "onnx", max_length=16, input_names=("input_ids", "attention_mask", "token_type_ids"))
    long_text = " ".join(POSITIVE * 5)
    for texts in ([POSITIVE[0]], POSITIVE[:5] + [long_text], [long_text]):
        ref = tok(texts, padding=True, truncation=True, max_length=16, return_tensors="np")
        got = encode(texts)
        for key in got:
            assert got[key].dtype == np.int64 and (got[key] == ref[key]).all(), key
    assert encode([long_text])["input_ids"].shape == (1, 16)


def test_onnx_runtime_path_does_not_import_torch(exported):
    import subprocess
    import sys

    code = ("import sys; from export.runtime import OnnxClassifier; "
            f"m = OnnxClassifier({str(exported[0] / 'onnx-int8')!r}, threads=1); "
            f"print(m.label_names[m.predict([{POSITIVE[0]!r}])[0]], 'torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["positive", "False", "False"]


def test_parity_check_fails_loudly_on_a_tampered_model(exported, tmp_path):
    import onnx
    from onnx import numpy_helper

    from export.onnx import ParityError, check_parity

    out, _ = exported
    shutil.copytree(out / "onnx", tmp_path / "onnx")
    model = onnx.load(str(tmp_path / "onnx" / "model.onnx"))
    bias = next(i for i in model.graph.initializer if i.name.endswith("classifier.bias"))
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + np.float32(1e-2), bias.name))
    onnx.save(model, str(tmp_path / "onnx" / "model.onnx"))
    with pytest.raises(ParityError, match=r"max \|logit difference\| 0\.01 > atol 0\.0001"):
        check_parity(out / "hf", tmp_path / "onnx", POSITIVE[:3])


# -- other sources ---------------------------------------------------------------------------------


def fit_checkpoint(tiny_bert: Path, sst2_dir: Path, root: Path, extra: list[str]) -> Path:
    """Train two steps through the real CLI and return the checkpoint it saved."""
    from cli import main

    main(["fit", "--model=lit_modules.TextClassifier", f"--model.model_name={tiny_bert}", *extra,
          "--data=datamodules.SST2DataModule", f"--data.data_dir={sst2_dir}", "--trainer.max_steps=2",
          "--trainer.logger=false", f"--trainer.default_root_dir={root}", "--trainer.enable_progress_bar=false",
          "--trainer.enable_model_summary=false", "--trainer.num_sanity_val_steps=0", "--trainer.limit_val_batches=0"])
    (ckpt,) = sorted((root / "checkpoints").glob("*.ckpt"))
    return ckpt


@pytest.mark.parametrize("extra,layers", [([], 2), (["--model.keep_layers=[0]"], 1)], ids=["full", "keep_layers_student"])
def test_export_lightning_checkpoint(extra, layers, tiny_bert, sst2_files, tmp_path):
    from transformers import AutoConfig

    from export.cli import export_main

    ckpt = fit_checkpoint(tiny_bert, sst2_files, tmp_path / "run", extra)
    summary = export_main(["--source", str(ckpt), "--output_dir", str(tmp_path / "out"), "--quantization", "none",
                           "--eval_file", str(sst2_files / "dev.tsv")])
    assert summary["source_info"] == {"kind": "checkpoint", "module_class": "lit_modules.TextClassifier", "base_model": str(tiny_bert)}
    config = AutoConfig.from_pretrained(tmp_path / "out" / "onnx")
    assert config.num_hidden_layers == layers and config.id2label == {0: "negative", 1: "positive"}
    assert summary["parity"]["max_abs_diff"] < 1e-4
    assert not (tmp_path / "out" / "onnx-int8").exists() and "fp32_accuracy" in summary["evaluation"]


def test_export_lora_adapter_is_merged(tiny_bert, sst2_files, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from export.cli import export_main

    torch.manual_seed(1)
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    peft_model = get_peft_model(base, LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"]))
    with torch.no_grad():  # lora_B starts at zero; make the adapter change the model so merging is visible
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)
    peft_model.eval().save_pretrained(tmp_path / "adapter")
    enc = AutoTokenizer.from_pretrained(tiny_bert)(POSITIVE[:4], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = peft_model(**enc).logits.numpy()

    summary = export_main(["--source", str(tmp_path / "adapter"), "--output_dir", str(tmp_path / "out"),
                           "--eval_file", str(sst2_files / "dev.tsv"), "--max_accuracy_drop", "null"])
    assert summary["source_info"]["merged"] and summary["label_names"] == ["LABEL_0", "LABEL_1"]
    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out" / "hf").eval()
    assert not any("lora" in k for k in merged.state_dict())
    with torch.no_grad():
        got = merged(**enc).logits.numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # The LoRA update is inside the weights now, and the trained head came from the adapter.
    query = "bert.encoder.layer.0.attention.self.query.weight"
    original = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2).state_dict()[query]
    assert (merged.state_dict()[query] - original).abs().max() > 1e-2
    head = peft_model.base_model.model.classifier.modules_to_save["default"].weight
    assert torch.equal(merged.classifier.weight, head.detach())
    assert summary["parity"]["max_abs_diff"] < 1e-4 and (tmp_path / "out" / "onnx-int8").is_dir()


def test_unknown_sources_are_one_clear_error(tmp_path):
    from export.cli import export_main

    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    for source, expected in (("empty", "not a Lightning checkpoint file, an HF model directory"),
                             ("notes.ckpt", "notes.ckpt: cannot be read as a Lightning checkpoint")):
        with pytest.raises(SystemExit, match=expected) as err:
            export_main(["--source", str(tmp_path / source), "--output_dir", str(tmp_path / "out"), "--max_accuracy_drop", "null"])
        assert "\n" not in str(err.value)


# -- quantization and the accuracy gate ------------------------------------------------------------


def test_detect_isa_prefers_vnni_then_avx512_then_avx2():
    from export.quantize import detect_isa

    assert detect_isa({"avx2", "avx512f", "avx512_vnni"}) == "avx512_vnni"
    assert detect_isa({"avx2", "avx512f"}) == "avx512"
    assert detect_isa({"avx2", "sse4_2"}) == "avx2"


def test_gate_fails_on_a_broken_int8_model(trained_hf, sst2_files, tmp_path, monkeypatch):
    import export.stage
    from export.quantize import quantize

    def broken_quantize(onnx_dir, out_dir, *args):
        info = quantize(onnx_dir, out_dir, *args)
        zero_int8_weights(Path(out_dir) / "model_quantized.onnx")
        return info

    monkeypatch.setattr(export.stage, "quantize", broken_quantize)
    from export.cli import export_main

    out = tmp_path / "out"
    with pytest.raises(SystemExit) as err:
        export_main(["--source", str(trained_hf), "--output_dir", str(out), "--eval_file", str(sst2_files / "dev.tsv")])
    message = str(err.value)
    assert "accuracy gate failed: int8 accuracy 50.00% is 50.00 points below fp32 100.00%" in message
    assert "\n" not in message and "onnx-int8.rejected" in message
    assert not (out / "onnx-int8").exists()
    assert "REJECTED by the accuracy gate" in (out / "onnx-int8.rejected" / "README.md").read_text()
    assert json.loads((out / "export.json").read_text())["evaluation"]["passed"] is False


def test_unfused_export_gives_the_same_logits(exported, trained_hf, sst2_files, tmp_path):
    import onnx

    from export.cli import export_main
    from export.runtime import OnnxClassifier

    out, _ = exported
    summary = export_main(["--source", str(trained_hf), "--output_dir", str(tmp_path / "out"), "--fuse", "false",
                           "--quantization", "none", "--eval_file", str(sst2_files / "dev.tsv")])
    assert summary["onnx"]["fusion"] == {"fused": False, "reason": "fuse=false"}
    texts = POSITIVE + NEGATIVE
    fused, plain = OnnxClassifier(out / "onnx"), OnnxClassifier(tmp_path / "out" / "onnx")
    assert {"Attention"} <= {n.op_type for n in onnx.load(str(fused.path)).graph.node}
    np.testing.assert_allclose(fused.logits(texts), plain.logits(texts), atol=1e-5)
    np.testing.assert_allclose(fused.logits(texts[:1]), plain.logits(texts[:1]), atol=1e-5)


def test_fusion_with_static_quantization_is_one_clear_error(trained_hf, sst2_files, tmp_path):
    from export.cli import export_main

    with pytest.raises(SystemExit, match="fuse=true with quantization=static") as err:
        export_main(["--source", str(trained_hf), "--output_dir", str(tmp_path / "out"), "--fuse", "true",
                     "--quantization", "static", "--calibration_file", str(sst2_files / "train.tsv"),
                     "--eval_file", str(sst2_files / "dev.tsv")])
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()  # refused before writing anything


def test_gate_needs_an_eval_file(trained_hf, tmp_path):
    from export.cli import export_main

    with pytest.raises(SystemExit, match="accuracy gate needs an eval_file"):
        export_main(["--source", str(trained_hf), "--output_dir", str(tmp_path / "out")])


def test_static_quantization_is_calibrated_and_excludes_fragile_nodes(trained_hf, sst2_files, tmp_path):
    from export.cli import export_main

    summary = export_main(["--source", str(trained_hf), "--output_dir", str(tmp_path / "out"), "--quantization", "static",
                           "--calibration_file", str(sst2_files / "train.tsv"), "--calibration_samples", "12",
                           "--eval_file", str(sst2_files / "dev.tsv"), "--max_accuracy_drop", "100"])
    q = summary["quantization"]
    assert q["mode"] == "static" and q["operators"] == ["MatMul", "Add"] and q["calibration_samples"] == 12
    assert q["excluded_nodes"] > 0
    assert summary["onnx"]["fusion"]["fused"] is False  # the exclusions name LayerNorm/GELU nodes: unfused graph
    assert summary["evaluation"]["agreement"] >= 0.75
    assert "calibration" in (tmp_path / "out" / "onnx-int8" / "README.md").read_text()


# -- config files for the export command ---------------------------------------------------------

EXPORT_CONFIGS = sorted((REPO / "configs" / "export").glob("export_*.yaml"))


def test_export_configs_are_found():
    assert EXPORT_CONFIGS


@pytest.mark.parametrize("config", EXPORT_CONFIGS, ids=lambda p: p.name)
def test_export_config_runs(config, trained_hf, sst2_files, tmp_path):
    from export.cli import export_main

    keys = yaml.safe_load(config.read_text())
    args = ["--config", str(config), "--source", str(trained_hf), "--output_dir", str(tmp_path / "out"),
            "--eval_file", str(sst2_files / "dev.tsv"), "--max_accuracy_drop", "100"]
    if "calibration_file" in keys:
        args += ["--calibration_file", str(sst2_files / "train.tsv")]
    summary = export_main(args)
    assert summary["quantization"]["mode"] == keys.get("quantization", "dynamic")


# -- batch prediction ------------------------------------------------------------------------------


def predict(args: list[str]) -> int:
    from export.cli import predict_main

    return predict_main(args)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_predict_file_formats(fmt, exported, tmp_path):
    texts = POSITIVE[:3] + ['a "quoted", comma text\nwith a newline'] + NEGATIVE[:3]
    path = tmp_path / f"in.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps({"id": f"r{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    elif fmt == "tsv":  # GLUE style: no quoting, so no newlines inside texts
        path.write_text("id\tsentence\n" + "".join(f"r{i}\t{t.replace(chr(10), ' ')}\n" for i, t in enumerate(texts)))
    else:
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows([["id", "text"]] + [[f"r{i}", t] for i, t in enumerate(texts)])
    n = predict(["--model_dir", str(exported[0] / "onnx-int8"), "--input_file", str(path), "--output_file",
                 str(tmp_path / "out.csv"), "--id_column", "id", "--chunk_size", "3", "--batch_size", "2"])
    rows = read_csv(tmp_path / "out.csv")
    assert n == len(texts) and [r["id"] for r in rows] == [f"r{i}" for i in range(len(texts))]
    assert [r["label"] for r in rows[:3]] == ["positive"] * 3 and [r["label"] for r in rows[-3:]] == ["negative"] * 3
    assert all(0.5 <= float(r["probability"]) <= 1.0 for r in rows)


def test_predict_file_empty_inputs_write_only_a_header(exported, tmp_path):
    for name, content in (("zero.csv", ""), ("header_only.csv", "text\n"), ("blank.jsonl", "\n")):
        (tmp_path / name).write_text(content)
        assert predict(["--model_dir", str(exported[0] / "onnx"), "--input_file", str(tmp_path / name),
                        "--output_file", str(tmp_path / f"{name}.out.csv")]) == 0
        assert (tmp_path / f"{name}.out.csv").read_text().splitlines() == ["row,label,probability"]


def test_predict_file_missing_column_is_one_line_naming_file_and_column(exported, tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text("id,body\n1,great game\n")
    with pytest.raises(SystemExit) as err:
        predict(["--model_dir", str(exported[0] / "onnx"), "--input_file", str(path), "--output_file",
                 str(tmp_path / "out.csv"), "--text_column", "review"])
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "'review'" in message
    assert not (tmp_path / "out.csv").exists()


def test_predict_file_truncates_very_long_texts(exported, tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("text\n" + " ".join(NEGATIVE * 400) + "\n" + POSITIVE[0] + "\n")
    assert predict(["--model_dir", str(exported[0] / "onnx-int8"), "--input_file", str(path),
                    "--output_file", str(tmp_path / "out.csv"), "--max_length", "64"]) == 2
    assert [r["row"] for r in read_csv(tmp_path / "out.csv")] == ["2", "3"]


def test_reader_errors_name_the_file_and_line(tmp_path):
    from export.texts import DataError, iter_records, read_labelled

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": broken\n')
    with pytest.raises(DataError, match=r"bad.jsonl: line 2: invalid JSON"):
        list(iter_records(bad, [None]))
    (tmp_path / "x.parquet").write_text("")
    with pytest.raises(DataError, match=r"x.parquet: unknown file type '.parquet'"):
        list(iter_records(tmp_path / "x.parquet", [None]))
    labelled = tmp_path / "dev.csv"
    labelled.write_text("text,label\ngood,positive\nbad,0\nodd,maybe\n")
    with pytest.raises(DataError, match=r"dev.csv: row 4: label='maybe' is not a known label"):
        read_labelled(labelled, LABELS)
    labelled.write_text("text,label\ngood,positive\nbad,0\n")
    assert read_labelled(labelled, LABELS) == (["good", "bad"], [1, 0])


def test_iter_chunks_reads_only_as_far_as_needed():
    from export.predict import iter_chunks

    def rows():
        yield from range(4)
        raise AssertionError("read past the first chunks")

    chunks = iter_chunks(rows(), 2)
    assert next(chunks) == [0, 1] and next(chunks) == [2, 3]


def test_predict_file_memory_does_not_grow_with_the_file(exported, tmp_path):
    from export.predict import predict_file

    peaks = []
    for n in (500, 5000):
        path = tmp_path / f"in{n}.csv"
        path.write_text("text\n" + "".join(f"{POSITIVE[i % 8]} number {i}\n" for i in range(n)))
        tracemalloc.start()
        assert predict_file(str(exported[0] / "onnx-int8"), str(path), str(tmp_path / f"out{n}.csv"), chunk_size=100) == n
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    # Ten times the rows, about the same Python peak (a list of every text would grow ~10x).
    assert peaks[1] < 1.5 * peaks[0], peaks
