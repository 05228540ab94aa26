"""The table models: rows of numbers and category ids in, logits out; ids outside a column's
vocabulary read as "unknown"; every parameter learns."""

from __future__ import annotations

import pytest
import torch

from deepline.models import build_model
from deepline.registry import MODELS

COLUMNS = [
    {"name": "age", "kind": "numeric", "mean": 40.0, "std": 10.0, "vocabulary": []},
    {"name": "colour", "kind": "categorical", "vocabulary": ["red", "blue", "green"]},
    {"name": "height", "kind": "numeric", "mean": 170.0, "std": 8.0, "vocabulary": []},
    {"name": "city", "kind": "categorical", "vocabulary": ["a", "b"]},
]
SMALL = {
    "tabular_mlp": {"hidden": [16]},
    "tabular_mlp_periodic": {
        "hidden": [16],
        "numeric_embedding": "periodic",
        "frequencies": 4,
        "numeric_dim": 3,
    },
    "ft_transformer": {"d_token": 16, "heads": 2, "blocks": 2},
}


def make(name: str) -> torch.nn.Module:
    config = MODELS.meta(name.removesuffix("_periodic"))["config"](**SMALL[name])
    return build_model(config, columns=COLUMNS, num_classes=3)


def rows(n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    columns = [
        torch.randn(n, generator=g),
        torch.randint(0, 4, (n,), generator=g).float(),
        torch.randn(n, generator=g),
        torch.randint(0, 3, (n,), generator=g).float(),
    ]
    return torch.stack(columns, dim=1)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_rows_in_logits_out_and_every_parameter_learns(name: str) -> None:
    model = make(name)
    out = model(rows(5))
    assert out.shape == (5, 3) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", sorted(SMALL))
def test_ids_outside_the_vocabulary_read_as_unknown(name: str) -> None:
    model = make(name).eval()
    x = rows(4)
    unknown, outside = x.clone(), x.clone()
    unknown[:, 1] = 0.0
    outside[:, 1] = torch.tensor([7.0, -3.0, 4.0, 1000.0])  # colour has ids 0..3
    torch.testing.assert_close(model(outside), model(unknown))


def test_periodic_embeddings_are_each_columns_own() -> None:
    """Column j's features depend on column j alone (one set of frequencies and one linear
    layer per column), and have the declared width."""
    from deepline.models.columns import PeriodicEmbeddings

    torch.manual_seed(0)
    embed = PeriodicEmbeddings(n=3, frequencies=5, dim=4, sigma=1.0)
    x = torch.randn(8, 3)
    out = embed(x).reshape(8, 3, 4)
    assert embed.width == 12
    moved = x.clone()
    moved[:, 1] += 1.0
    changed = (embed(moved).reshape(8, 3, 4) - out).abs().amax(dim=(0, 2))
    assert changed[0] == 0 and changed[2] == 0 and changed[1] > 0
