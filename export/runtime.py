"""The lean inference path: fast tokenizer -> numpy arrays -> ``onnxruntime.InferenceSession.run``.

Every extra Python layer between the tokenizer and the session costs a noticeable share of a
one-millisecond int8 call, so this path calls the Rust tokenizer (``tokenizers.Tokenizer``) directly
and feeds its ids to the session as they are. It needs only numpy, tokenizers and onnxruntime:
no torch, no transformers. Batch prediction, the accuracy gate and the benchmark
all use it, so the numbers measured are the numbers users get.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["OnnxClassifier", "TokenEncoder", "find_onnx_file", "session_options", "softmax"]


def find_onnx_file(model_dir: str | Path, file_name: str | None = None) -> Path:
    """The ONNX file of an exported directory (``model.onnx`` or ``model_quantized.onnx``)."""
    model_dir = Path(model_dir)
    if file_name is not None:
        path = model_dir / file_name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such ONNX file")
        return path
    found = sorted(model_dir.glob("*.onnx"))
    if len(found) != 1:
        raise FileNotFoundError(f"{model_dir}: expected exactly one .onnx file, found {[p.name for p in found]}; pass file_name")
    return found[0]


def session_options(threads: int | None = None):
    """Session options for latency on CPU: ``threads`` intra-op threads (None: all cores), no inter-op pool."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads is not None:
        so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return so


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (B, C) logits, computed stably."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _token(value) -> str | None:
    """A special token as tokenizer_config.json stores it: a string or an AddedToken dict."""
    return value.get("content") if isinstance(value, dict) else value


class TokenEncoder:
    """Tokenize to int64 numpy arrays, padded to the longest text, truncated to ``max_length``.

    Reads ``tokenizer.json`` with the Rust ``tokenizers`` library and ``tokenizer_config.json`` for the
    settings ``transformers`` would apply, giving the same ids as ``AutoTokenizer.from_pretrained(dir)(texts,
    padding=True, truncation=True, max_length=...)`` without importing ``transformers`` (which imports
    torch: about 450 MiB of resident memory that an ONNX deployment does not need). Directories with
    only a slow tokenizer fall back to ``transformers``.

    Args:
        model_dir: directory with ``tokenizer.json`` (and ``tokenizer_config.json``).
        max_length: longest sequence kept (capped at the tokenizer's ``model_max_length``).
        input_names: the model's input names; ``token_type_ids`` is produced only when listed.
    """

    def __init__(self, model_dir: str | Path, max_length: int = 128,
                 input_names: tuple[str, ...] = ("input_ids", "attention_mask")) -> None:
        model_dir = Path(model_dir)
        config_path = model_dir / "tokenizer_config.json"
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        self.max_length = min(max_length, int(config.get("model_max_length") or max_length))
        self.input_names = tuple(input_names)
        self.fast, self.slow = None, None
        if not (model_dir / "tokenizer.json").is_file():
            from transformers import AutoTokenizer

            self.slow = AutoTokenizer.from_pretrained(model_dir)
            return
        from tokenizers import Tokenizer

        fast = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        pad_token = _token(config.get("pad_token")) or _token(_special_tokens(model_dir).get("pad_token"))
        pad_id = fast.token_to_id(pad_token) if pad_token is not None else None
        if pad_id is None:
            raise ValueError(f"{model_dir}: the tokenizer has no pad token; cannot batch")
        # tokenizer.json may carry its own (e.g. fixed-length) padding; replace it with pad-to-longest.
        fast.enable_truncation(self.max_length, direction=config.get("truncation_side", "right"))
        fast.enable_padding(direction=config.get("padding_side", "right"), pad_id=pad_id, pad_token=pad_token,
                            pad_type_id=int(config.get("pad_token_type_id", 0)))
        self.fast = fast

    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Return the model inputs, each of shape (B, L) and dtype int64."""
        if self.slow is not None:
            enc = self.slow(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np")
            return {k: enc[k].astype(np.int64) for k in self.input_names if k in enc}
        encs = [self.fast.encode(texts[0])] if len(texts) == 1 else self.fast.encode_batch(texts)
        feed = {"input_ids": np.array([e.ids for e in encs], dtype=np.int64)}
        if "attention_mask" in self.input_names:
            feed["attention_mask"] = np.array([e.attention_mask for e in encs], dtype=np.int64)
        if "token_type_ids" in self.input_names:
            feed["token_type_ids"] = np.array([e.type_ids for e in encs], dtype=np.int64)
        return feed


def _special_tokens(model_dir: Path) -> dict:
    path = model_dir / "special_tokens_map.json"
    return json.loads(path.read_text()) if path.is_file() else {}


class OnnxClassifier:
    """A text classifier over an exported directory (ONNX file + tokenizer + ``config.json``).

    Args:
        model_dir: directory written by the export command (``onnx`` or ``onnx-int8``).
        file_name: the ONNX file inside it; None finds the only one.
        threads: intra-op threads; None lets onnxruntime use every core.
        max_length: longest token sequence; longer texts are truncated.
    """

    def __init__(self, model_dir: str | Path, file_name: str | None = None, threads: int | None = None, max_length: int = 128) -> None:
        import onnxruntime as ort

        self.model_dir = Path(model_dir)
        self.path = find_onnx_file(model_dir, file_name)
        self.session = ort.InferenceSession(str(self.path), session_options(threads), providers=["CPUExecutionProvider"])
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.output_names = [self.session.get_outputs()[0].name]
        id2label = json.loads((self.model_dir / "config.json").read_text()).get("id2label") or {}
        n_out = self.session.get_outputs()[0].shape[-1]
        n = n_out if isinstance(n_out, int) else len(id2label)
        self.label_names = [id2label.get(str(i), f"LABEL_{i}") for i in range(n)]
        self.encode = TokenEncoder(model_dir, max_length, self.input_names)

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """Logits (B, C) of already tokenized inputs: the bare session call."""
        return self.session.run(self.output_names, feed)[0]

    def logits(self, texts: list[str]) -> np.ndarray:
        """Logits of shape (B, C)."""
        return self.run(self.encode(texts))

    def predict(self, texts: list[str]) -> np.ndarray:
        """Class indices of shape (B,)."""
        return self.logits(texts).argmax(-1)
