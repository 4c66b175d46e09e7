"""Baselines that need no fine-tuning, on frozen sentence-transformers embeddings.

- **Embedding probe:** the pretrained encoder stays frozen; a logistic regression learns the classes
  from its sentence embeddings of the training texts.
- **Few-shot nearest neighbours:** ``k`` labelled examples per class (e.g. 8 and 64) form the whole
  "training set"; a text gets the majority class of its nearest examples by cosine or Euclidean
  similarity. Each setting is repeated over several random draws of the examples (mean and spread),
  because with 8 examples per class the draw matters as much as the method.

They show what fine-tuning and distillation buy over cheap alternatives. ``run_baselines`` does all
of them and times the encoder the way the latency benchmark times the models (batch 1 and batch 32).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from export.gate import classification_scores

__all__ = ["embed", "embedding_probe", "few_shot_knn", "load_encoder", "run_baselines"]


def load_encoder(name: str, threads: int | None = None):
    """A ``SentenceTransformer`` by Hub id or directory, found offline through the model resolver.

    A final ``Normalize`` module (all-MiniLM-L6-v2 has one) is dropped: with unit vectors, Euclidean
    distance is a function of cosine similarity and the two measures would always agree. ``embed``
    normalises where cosine needs it.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize

    from distillery.hub import resolve_model

    if threads is not None:
        torch.set_num_threads(threads)
    encoder = SentenceTransformer(str(resolve_model(name)), device="cpu")
    modules = list(encoder)
    if modules and isinstance(modules[-1], Normalize):
        encoder = SentenceTransformer(modules=modules[:-1], device="cpu")
    return encoder


def embed(encoder, texts: list[str], batch_size: int = 128, normalize: bool = True) -> np.ndarray:
    """(N, D) float32 sentence embeddings; unit length when ``normalize`` (cosine similarity is then a dot product)."""
    out = encoder.encode(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=normalize,
                         show_progress_bar=False)
    return np.asarray(out, dtype=np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def embedding_probe(train_x: np.ndarray, train_y: np.ndarray, eval_x: np.ndarray, eval_y: np.ndarray,
                    num_labels: int, c: float = 1.0, seed: int = 42) -> dict:
    """Logistic regression on frozen embeddings; returns scores, fit time and the head's parameter count."""
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    head = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(train_x, train_y)
    fit_s = time.perf_counter() - start
    scores = classification_scores(head.predict(eval_x), eval_y, num_labels)
    head_params = int(head.coef_.size + head.intercept_.size)
    return {**scores, "fit_s": fit_s, "head_parameters": head_params, "train_rows": int(len(train_y)), "C": c}


def _draw(labels: np.ndarray, shots: int, num_labels: int, rng: np.random.Generator) -> np.ndarray:
    picked = []
    for c in range(num_labels):
        pool = np.flatnonzero(labels == c)
        if len(pool) < shots:
            raise ValueError(f"few-shot: class {c} has {len(pool)} training examples, fewer than shots={shots}")
        picked.append(rng.choice(pool, shots, replace=False))
    return np.concatenate(picked)


def knn_predict(support_x: np.ndarray, support_y: np.ndarray, eval_x: np.ndarray, metric: str,
                neighbors: int, num_labels: int) -> np.ndarray:
    """Majority class of the ``neighbors`` most similar support examples (ties: the nearer class wins)."""
    if metric == "cosine":
        sim = _unit(eval_x) @ _unit(support_x).T
    elif metric == "euclidean":
        sim = -np.sqrt(np.maximum(((eval_x[:, None, :] - support_x[None, :, :]) ** 2).sum(-1), 0.0))
    else:
        raise ValueError(f"few-shot: metric must be 'cosine' or 'euclidean', got {metric!r}")
    k = min(neighbors, len(support_y))
    top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    votes = np.zeros((len(eval_x), num_labels))
    for rank in range(k):  # a tiny rank bonus breaks ties towards the nearest neighbour
        np.add.at(votes, (np.arange(len(eval_x)), support_y[top[:, rank]]), 1.0 + 1e-6 * (k - rank))
    return votes.argmax(1)


def few_shot_knn(embed_fn, train_texts: list[str], train_y: np.ndarray, eval_x: np.ndarray, eval_y: np.ndarray,
                 num_labels: int, shots: int, metric: str, neighbors: int = 5, draws: int = 5, seed: int = 42) -> dict:
    """``shots`` examples per class, ``draws`` random draws; only the drawn examples are ever embedded."""
    rng = np.random.default_rng(seed)
    runs = []
    for _ in range(draws):
        idx = _draw(train_y, shots, num_labels, rng)
        support = embed_fn([train_texts[i] for i in idx])
        runs.append(classification_scores(knn_predict(support, train_y[idx], eval_x, metric, neighbors, num_labels),
                                          eval_y, num_labels))
    acc, f1 = np.array([r["accuracy"] for r in runs]), np.array([r["macro_f1"] for r in runs])
    return {"accuracy": float(acc.mean()), "accuracy_std": float(acc.std()), "macro_f1": float(f1.mean()),
            "macro_f1_std": float(f1.std()), "shots": shots, "metric": metric, "neighbors": neighbors,
            "draws": draws, "per_draw": runs}


def _latency(encoder, texts: list[str], warmup: int, n_b1: int) -> dict:
    """Encoder (+ a head's negligible matmul) time: batch-1 p50 over ``n_b1`` texts, batch-32 samples/s."""
    from export.timing import latency_stats, time_calls

    b1 = texts[:n_b1]
    e2e, _ = time_calls(lambda t: embed(encoder, t, batch_size=1), [[t] for t in b1], warmup)
    pool = (texts * (1 + 32 // max(1, len(texts))))[: max(32, 32 * (min(n_b1, len(texts)) // 32))]
    batches = [pool[i : i + 32] for i in range(0, len(pool) - 31, 32)]
    b32, _ = time_calls(lambda t: embed(encoder, t, batch_size=32), batches, 1)
    return {"b1": latency_stats(e2e, 1), "b32": latency_stats(b32, 32)}


def run_baselines(encoder_name: str, train_texts: list[str], train_labels: list[int], eval_texts: list[str],
                  eval_labels: list[int], num_labels: int, shots: list[int] = [8, 64],
                  metrics: list[str] = ["cosine", "euclidean"], neighbors: int = 5, draws: int = 5,
                  probe_train_limit: int | None = None, probe_c: float = 1.0, threads: int = 1,
                  latency_texts: int = 200, seed: int = 42) -> dict:
    """Embedding probe and few-shot kNN for every (shots, metric); scores on the eval texts, timings, sizes.

    Args:
        encoder_name: sentence-transformers model (Hub id or directory), e.g. all-MiniLM-L6-v2.
        probe_train_limit: train the probe on a seeded sample of this many training texts; None uses all.
        threads: torch threads for embedding and the latency figures (match the benchmark's).
        latency_texts: how many eval texts time batch 1 (after 10 warm-up calls).
    """
    from distillery.hub import resolve_model

    encoder = load_encoder(encoder_name, threads)
    train_y, eval_y = np.asarray(train_labels), np.asarray(eval_labels)
    start = time.perf_counter()
    eval_x = embed(encoder, eval_texts, normalize=False)  # raw pooled embeddings; each method normalises as it needs
    eval_embed_s = time.perf_counter() - start
    rng = np.random.default_rng(seed)
    probe_idx = np.arange(len(train_texts))
    if probe_train_limit is not None and probe_train_limit < len(train_texts):
        probe_idx = np.sort(rng.choice(len(train_texts), probe_train_limit, replace=False))
    start = time.perf_counter()
    train_x = embed(encoder, [train_texts[i] for i in probe_idx], normalize=False)
    train_embed_s = time.perf_counter() - start
    probe = embedding_probe(_unit(train_x), train_y[probe_idx], _unit(eval_x), eval_y, num_labels, probe_c, seed)
    probe["train_s"] = train_embed_s + probe["fit_s"]
    results = {"embedding_probe": probe}
    for k in shots:
        for metric in metrics:
            start = time.perf_counter()
            res = few_shot_knn(lambda t: embed(encoder, t, normalize=False), train_texts, train_y, eval_x, eval_y, num_labels, k,
                               metric, neighbors, draws, seed)
            res["train_s"] = (time.perf_counter() - start) / draws  # embedding one draw's examples
            results[f"knn_{k}shot_{metric}"] = res
    directory = Path(resolve_model(encoder_name))
    weights = sum(p.stat().st_size for p in directory.rglob("*") if p.suffix in (".safetensors", ".bin"))
    return {
        "encoder": encoder_name, "encoder_dir": str(directory), "threads": threads,
        "encoder_parameters": int(sum(p.numel() for p in encoder.parameters())), "encoder_size_bytes": int(weights),
        "embedding_dim": int(eval_x.shape[1]), "eval_rows": len(eval_texts), "eval_embed_s": eval_embed_s,
        "latency": _latency(encoder, eval_texts, 10, latency_texts), "results": results,
    }
