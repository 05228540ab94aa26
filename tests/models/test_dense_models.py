"""Models that answer per pixel (U-Nets) or per cell (CenterNet): shapes, gradients, sizes they
cannot take, and answers that do not depend on the rest of the batch."""

from __future__ import annotations

import pytest
import torch

from deepline.errors import ConfigError
from deepline.models import build_model
from deepline.registry import MODELS

DENSE = {"unet": 1, "resunet": 1, "centernet": 4}  # input pixels per output cell
CELL_CHANNELS = {"centernet": 4}  # outputs per cell beyond one per class


def make(name: str, shape: tuple[int, int, int], classes: int = 3) -> torch.nn.Module:
    config = MODELS.meta(name)["config"]()
    return build_model(config, in_channels=shape[0], num_classes=classes, image_size=shape[1:])


@pytest.mark.parametrize("shape", [(1, 32, 32), (3, 64, 96)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", sorted(DENSE))
def test_output_shape_and_gradients(name: str, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = make(name, shape)
    out = model(torch.randn(2, *shape))
    stride = DENSE[name]
    assert out.shape == (2, 3 + CELL_CHANNELS.get(name, 0), shape[1] // stride, shape[2] // stride)
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", sorted(DENSE))
def test_sizes_it_cannot_halve_are_refused_naming_the_field(name: str) -> None:
    with pytest.raises(ConfigError, match=r"data\.image_size: .* multiples of 16"):
        make(name, (1, 28, 28))


@pytest.mark.parametrize("name", sorted(DENSE))
def test_eval_is_deterministic_and_batch_independent(name: str) -> None:
    model = make(name, (3, 32, 32)).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        together = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(together, alone, atol=1e-4, rtol=1e-4)
