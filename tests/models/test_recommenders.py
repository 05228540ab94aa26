"""Recommenders: output shapes, padding invariance, gradients, and the closed-form fits against
hand computations."""

from __future__ import annotations

import pytest
import torch

from deepline.models import build_model
from deepline.models.popularity import user_item_matrix
from deepline.registry import MODELS

RECOMMENDERS = ["sasrec", "gru4rec", "bpr_mf", "popularity", "item_knn"]
ITEMS, USERS, MAX_LEN = 12, 5, 6


def make(name: str) -> torch.nn.Module:
    config = MODELS.meta(name)["config"]()
    return build_model(config, num_items=ITEMS, num_users=USERS, max_len=MAX_LEN).eval()


def rows() -> torch.Tensor:
    return torch.tensor([[1, 0, 0, 3, 4, 5, 6, 7, 2], [0, 0, 0, 0, 0, 0, 0, 9, 8]])


@pytest.mark.parametrize("name", RECOMMENDERS)
def test_shapes_and_padding(name: str) -> None:
    model = make(name)
    x = rows()
    assert model(x).shape == (2, ITEMS)
    assert model(x, every_position=True).shape[::2] == (2, ITEMS)
    wider = torch.cat([x[:, :1], torch.zeros(2, 7, dtype=torch.long), x[:, 1:]], dim=1)
    assert torch.allclose(model(wider), model(x), atol=1e-5)  # padding changes nothing


@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "bpr_mf"])
def test_gradients_reach_every_parameter(name: str) -> None:
    model = make(name).train()
    x = rows()
    x[1, 0] = 2  # a known user, so BPR-MF's user factors are used
    model(x, every_position=True).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing


def test_sasrec_is_causal() -> None:
    model = make("sasrec")
    x = rows()
    changed = x.clone()
    changed[:, -1] = 11  # the latest item: positions before it must not see it
    a, b = model(x, every_position=True), model(changed, every_position=True)
    assert torch.allclose(a[:, :-1], b[:, :-1], atol=1e-6)
    assert not torch.allclose(a[:, -1], b[:, -1])


def test_closed_form_fits_count_users() -> None:
    x = torch.tensor([[1, 0, 3, 4], [2, 0, 0, 3], [1, 0, 0, 5]])  # user 1 twice
    y = torch.tensor([[0, 4, 5], [0, 0, 6], [0, 0, 7]])
    matrix = user_item_matrix(x, y, ITEMS)
    assert matrix[1].nonzero().flatten().tolist() == [3, 4, 5, 7]
    assert matrix[2].nonzero().flatten().tolist() == [3, 6]
    popularity = make("popularity")
    popularity.fit_closed_form(x, y)
    assert popularity.counts[3] == 2 and popularity.counts[6] == 1 and popularity.counts[0] == 0
    knn = make("item_knn")
    knn.fit_closed_form(x, y)
    # items 3 and 4: users {1, 2} and {1}: cosine 1 / sqrt(2 * 1)
    assert knn.similarity[3, 4] == pytest.approx(2**-0.5, rel=1e-5)
    assert knn.similarity[3, 3] == 0
    scores = knn(torch.tensor([[0, 4]]))
    assert scores[0, 3] == pytest.approx(2**-0.5, rel=1e-5) and scores[0, 6] == 0
