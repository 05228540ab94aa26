"""Ranking metrics of next-item recommendation, under two protocols reported side by side;
``loss`` is the next item's softmax cross-entropy over every item.

- ``full``: the target is ranked among every item the user has not interacted with before
  (their history excluded). The honest protocol: Krichene & Rendle (KDD 2020) showed that
  sampled metrics can reverse the order of models.
- ``sampled``: the target is ranked among 100 items drawn uniformly, without replacement, from
  those the user never interacted with (history and target), as in the SASRec paper. The
  draws depend only on the seed, the user, the target and the history, so every model meets
  the same negatives. (On validation the user's later test item is not known here, so it may
  be drawn, with odds of about 100 in the catalogue's size.)

Ties count against the target (a model scoring every item alike ranks it last). For a 0-based
rank r: HR@K = [r < K], NDCG@K = [r < K] / log2(r + 2), MRR = 1 / (r + 1) (no cut-off).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from deepline.tasks.base import Evaluator

KS = (5, 10, 20)
LIST_LENGTH = 10  # of the lists whose coverage and popularity are reported
PROTOCOLS = ("full", "sampled")


def metric_names(ks: Sequence[int] = KS) -> list[str]:
    """``full/ndcg@10``-style names, in the order reports show them."""
    per = [f"{m}@{k}" for k in ks for m in ("hr", "ndcg")] + ["mrr"]
    return [f"{p}/{m}" for p in PROTOCOLS for m in per]


def rank_metrics(ranks: torch.Tensor, ks: Sequence[int] = KS) -> dict[str, torch.Tensor]:
    """Per-example HR@K, NDCG@K and MRR of 0-based ranks (float tensors)."""
    ranks = ranks.double()
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        hit = (ranks < k).double()
        out[f"hr@{k}"] = hit
        out[f"ndcg@{k}"] = hit / torch.log2(ranks + 2.0)
    out["mrr"] = 1.0 / (ranks + 1.0)
    return out


def full_ranks(scores: torch.Tensor, rows: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Rank of each target among the items not in its row's history (padding index 0 out)."""
    scores = scores.float().clone()
    target = scores.gather(1, targets[:, None])  # (B, 1)
    scores[:, 0] = -math.inf
    scores.scatter_(1, rows[:, 1:], -math.inf)  # seen items cannot be recommended
    scores.scatter_(1, targets[:, None], target)  # a target seen before still competes
    return (scores >= target).sum(1) - 1  # ties count against it


def sampled_negatives(
    row: np.ndarray, target: int, num_items: int, n: int, seed: int
) -> np.ndarray:
    """``n`` items (fewer if there are not as many) the row's user never interacted with,
    drawn without replacement by a generator seeded with (seed, user, target, history)."""
    seen = np.unique(np.append(row[1:], target))
    pool = np.setdiff1d(np.arange(1, num_items), seen, assume_unique=True)
    history_key = int(np.bitwise_xor.reduce(row[1:] * 2654435761 % (2**31)))
    rng = np.random.default_rng([seed, int(row[0]), target, history_key])
    return rng.choice(pool, size=min(n, len(pool)), replace=False)


def sampled_ranks(
    scores: torch.Tensor, rows: torch.Tensor, targets: torch.Tensor, n: int, seed: int
) -> torch.Tensor:
    """Rank of each target among its ``n`` sampled negatives (ties against it)."""
    rows_np, targets_np = rows.cpu().numpy(), targets.cpu().numpy()
    ranks = []
    for i in range(len(rows_np)):
        negatives = sampled_negatives(rows_np[i], int(targets_np[i]), scores.size(1), n, seed)
        row_scores = scores[i].float()
        negative_scores = row_scores[torch.from_numpy(negatives).to(scores.device)]
        ranks.append((negative_scores >= row_scores[targets[i]]).sum())
    return torch.stack(ranks) if ranks else torch.zeros(0, dtype=torch.long)


class RankingEvaluator(Evaluator):
    """HR@K, NDCG@K and MRR under both protocols, and catalogue coverage and mean training
    popularity of the top-10 lists; ``details`` keeps example lists for the report."""

    def __init__(
        self,
        counts: Sequence[int],
        negatives: int = 100,
        seed: int = 0,
        examples: int = 0,
        ks: Sequence[int] = KS,
    ) -> None:
        super().__init__()
        import torchmetrics

        self.ks, self.negatives, self.seed = tuple(ks), negatives, seed
        self.counts = torch.as_tensor(list(counts), dtype=torch.float64)
        self.means = torchmetrics.MetricCollection(
            {name.replace("/", "_"): torchmetrics.MeanMetric() for name in metric_names(ks)}
        )  # metrics, so processes reduce them too
        self.recommended = recommended_items(len(self.counts))
        self.popularity = torchmetrics.MeanMetric()
        self.mean_loss = torchmetrics.MeanMetric()
        self.keep_examples = examples
        self.count = 0
        self.examples: list[dict[str, Any]] = []

    @torch.no_grad()
    def update(self, x: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        scores = outputs.float()
        self.count += len(targets)
        self.mean_loss.update(F.cross_entropy(scores[:, 1:], targets - 1, reduction="none"))
        for protocol, ranks in (
            ("full", full_ranks(scores, x, targets)),
            ("sampled", sampled_ranks(scores, x, targets, self.negatives, self.seed)),
        ):
            for name, values in rank_metrics(ranks, self.ks).items():
                self.means[f"{protocol}_{name}"].update(values)
        top = top_items(scores, x, LIST_LENGTH).cpu()  # (B, 10)
        self.recommended.update(top.reshape(-1))
        self.popularity.update(self.counts[top].mean(1))
        for i in range(min(len(x), self.keep_examples - len(self.examples))):
            history = x[i, 1:][x[i, 1:] > 0]
            self.examples.append(
                {"user": int(x[i, 0]), "history": history.tolist(), "target": int(targets[i]),
                 "recommended": top[i].tolist()}
            )  # fmt: skip

    def compute(self) -> dict[str, float]:
        metrics = {"loss": float(self.mean_loss.compute())}
        metrics.update((k.replace("_", "/", 1), float(v)) for k, v in self.means.compute().items())
        catalogue = max(1, len(self.counts) - 1)
        metrics[f"coverage@{LIST_LENGTH}"] = float(self.recommended.compute().sum()) / catalogue
        metrics[f"popularity@{LIST_LENGTH}"] = float(self.popularity.compute())
        return metrics

    def details(self) -> dict[str, Any]:
        return {"n": self.count, "examples": self.examples, "negatives": self.negatives,
                "seed": self.seed}  # fmt: skip


def recommended_items(num_items: int) -> Any:
    """A metric marking each item recommended at least once (0/1 per item), the union taken
    over processes."""
    import torchmetrics

    class Recommended(torchmetrics.Metric):
        full_state_update = False
        marked: torch.Tensor

        def __init__(self) -> None:
            super().__init__()
            self.add_state("marked", torch.zeros(num_items), dist_reduce_fx="max")

        def update(self, items: torch.Tensor) -> None:
            self.marked[items.to(self.marked.device)] = 1.0

        def compute(self) -> torch.Tensor:
            return self.marked

    return Recommended()


def top_items(scores: torch.Tensor, rows: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` best items (B, k) that are not in each row's history, best first."""
    masked = scores.float().clone()
    masked[:, 0] = -math.inf
    masked.scatter_(1, rows[:, 1:], -math.inf)
    return masked.topk(min(k, masked.size(1)), dim=1).indices
