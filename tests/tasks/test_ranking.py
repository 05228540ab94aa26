"""Ranking metrics against a brute-force computation on a small synthetic log, and the
sampled protocol's negatives."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from deepline.tasks.ranking import (
    RankingEvaluator,
    full_ranks,
    metric_names,
    sampled_negatives,
    sampled_ranks,
)

ITEMS = 30


def synthetic_batch(seed: int = 0, n: int = 40) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows ``[user, history]`` left-padded, targets outside their history, random scores
    with deliberate ties."""
    rng = np.random.default_rng(seed)
    rows, targets = [], []
    for user in range(1, n + 1):
        items = rng.permutation(np.arange(1, ITEMS))[: rng.integers(2, 12)]
        history, target = items[:-1], items[-1]
        rows.append(np.concatenate([[user], np.zeros(12 - len(history), int), history]))
        targets.append(target)
    scores = torch.from_numpy(rng.integers(0, 8, (n, ITEMS)).astype(np.float32))  # ties
    return torch.tensor(np.array(rows)), torch.tensor(targets), scores


def brute_rank(scores: list[float], target: int, candidates: list[int]) -> int:
    """Candidates (target excluded) scoring at least as high as the target."""
    return sum(1 for c in candidates if c != target and scores[c] >= scores[target])


def brute_metrics(ranks: list[int]) -> dict[str, float]:
    out = {}
    for k in (5, 10, 20):
        out[f"hr@{k}"] = float(np.mean([r < k for r in ranks]))
        out[f"ndcg@{k}"] = float(np.mean([1 / math.log2(r + 2) if r < k else 0 for r in ranks]))
    out["mrr"] = float(np.mean([1 / (r + 1) for r in ranks]))
    return out


def test_both_protocols_agree_with_brute_force() -> None:
    rows, targets, scores = synthetic_batch()
    full, sampled = [], []
    for row, target, s in zip(rows.tolist(), targets.tolist(), scores.tolist()):
        seen = {i for i in row[1:] if i}
        full.append(brute_rank(s, target, [i for i in range(1, ITEMS) if i not in seen]))
        negatives = sampled_negatives(np.array(row), target, ITEMS, 10, seed=3).tolist()
        assert len(set(negatives)) == 10 and not set(negatives) & (seen | {target, 0})
        sampled.append(brute_rank(s, target, negatives))
    assert full_ranks(scores, rows, targets).tolist() == full
    assert sampled_ranks(scores, rows, targets, 10, seed=3).tolist() == sampled
    evaluator = RankingEvaluator([1] * ITEMS, negatives=10, seed=3)
    for i in range(0, len(rows), 16):  # in batches, as evaluation runs
        evaluator.update(rows[i : i + 16], scores[i : i + 16], targets[i : i + 16])
    metrics = evaluator.compute()
    assert set(metric_names()) <= set(metrics)
    for protocol, ranks in (("full", full), ("sampled", sampled)):
        for name, value in brute_metrics(ranks).items():
            assert metrics[f"{protocol}/{name}"] == pytest.approx(value, rel=1e-6), name


def test_ties_count_against_the_target() -> None:
    rows, targets, _ = synthetic_batch(1, n=4)
    flat = torch.zeros(4, ITEMS)
    unseen = [ITEMS - 1 - int((r[1:] > 0).sum()) for r in rows]  # items left, target included
    assert full_ranks(flat, rows, targets).tolist() == [u - 1 for u in unseen]


def test_negatives_are_the_same_for_every_model_and_differ_by_seed() -> None:
    row = np.array([7, 0, 0, 3, 4])
    first = sampled_negatives(row, 9, 200, 100, seed=0)
    assert np.array_equal(first, sampled_negatives(row.copy(), 9, 200, 100, seed=0))
    assert not np.array_equal(first, sampled_negatives(row, 9, 200, 100, seed=1))
    # items 1..7, less the history's 3 and 4 (the target 9 is not among them): all 5 left
    assert sorted(sampled_negatives(row, 9, 8, 100, seed=0).tolist()) == [1, 2, 5, 6, 7]


def test_coverage_and_popularity_of_the_lists() -> None:
    rows, targets, scores = synthetic_batch(2, n=10)
    counts = list(range(ITEMS))
    evaluator = RankingEvaluator(counts, negatives=5)
    evaluator.update(rows, scores, targets)
    metrics = evaluator.compute()
    assert 10 / (ITEMS - 1) <= metrics["coverage@10"] <= 1.0
    masked = scores.clone()
    masked[:, 0] = -math.inf
    masked.scatter_(1, rows[:, 1:], -math.inf)
    top = masked.topk(10, dim=1).indices
    assert metrics["popularity@10"] == pytest.approx(float(top.double().mean()), rel=1e-6)


def test_privacy_is_refused_for_recommenders_by_name(tmp_path: Path) -> None:
    from deepline.config import load_config
    from deepline.errors import ConfigError
    from deepline.training.experiment import run_training
    from tests.conftest import movie_log

    log, _ = movie_log(tmp_path / "data")
    raw = {"data": {"name": "interactions", "path": str(log), "context": 4},
           "model": {"name": "sasrec", "d_model": 8, "heads": 1, "layers": 1},
           "train": {"epochs": 1, "privacy": {"target_epsilon": 3.0, "delta": 1e-5,
                                             "max_grad_norm": 1.0}}}  # fmt: skip
    with pytest.raises(ConfigError, match=r"train\.privacy with task sequential_recommendation"):
        run_training(load_config(raw), tmp_path / "runs")
