"""One contract every registered model passes: shapes, sizes, gradients, config round trip."""

from __future__ import annotations

import pytest
import torch

from deepline.errors import ConfigError
from deepline.models import build_model
from deepline.registry import MODELS

# sequence and table models take other inputs; tests/models/test_sequence_models.py and
# tests/models/test_table_models.py cover them
SEQUENCE_MODELS = {"lstm", "gru", "transformer", "gpt"}
TABLE_MODELS = {"tabular_mlp", "ft_transformer"}
# tests/models/test_recommenders.py
RECOMMENDERS = {"sasrec", "gru4rec", "bpr_mf", "popularity", "item_knn"}
# a value per pixel or cell, not per image: tests/models/test_dense_models.py
DENSE = {"unet", "resunet", "centernet"}
GENERATORS = {"dcgan"}  # latents in, images out: below
POLICIES = {"actor_critic", "q_network"}  # observations in, a score per action and a value out
FORECASTERS = {"nbeats"}  # series windows in, the next values out: below
OTHER_INPUTS = SEQUENCE_MODELS | TABLE_MODELS | RECOMMENDERS | DENSE | GENERATORS | POLICIES
OTHER_INPUTS |= FORECASTERS
BUILT_IN = [name for name in MODELS.names() if name != "custom" and name not in OTHER_INPUTS]
SIZES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 64, 64)]
SMALLEST = {"tempered_cnn": 14}  # models that need larger images say so in their error


def make(name: str, shape: tuple[int, int, int], classes: int = 7) -> torch.nn.Module:
    config = MODELS.meta(name)["config"]()
    return build_model(config, in_channels=shape[0], num_classes=classes, image_size=shape[1:])


@pytest.mark.parametrize("shape", SIZES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", BUILT_IN)
def test_output_shape_and_gradients(name: str, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    if min(shape[1:]) < SMALLEST.get(name, 0):
        with pytest.raises(ConfigError, match=f"at least {SMALLEST[name]}x{SMALLEST[name]}"):
            make(name, shape)
        return
    model = make(name, shape)
    x = torch.randn(3, *shape)
    out = model(x)
    assert out.shape == (3, 7) and out.dtype == torch.float32
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", BUILT_IN)
def test_eval_is_deterministic_and_batch_independent(name: str) -> None:
    model = make(name, (1, 28, 28)).eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        together = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", BUILT_IN)
def test_config_round_trip_and_docstring(name: str) -> None:
    config_cls = MODELS.meta(name)["config"]
    config = config_cls()
    assert config_cls.model_validate(config.model_dump()) == config
    doc = MODELS.get(name).__doc__ or ""
    assert "Input" in doc and "Output" in doc  # shapes are documented


def test_resnet_depth_and_width() -> None:
    from deepline.models.resnet import ResNetConfig

    model = build_model(
        ResNetConfig(blocks=[1, 1], width=8), in_channels=3, num_classes=5, image_size=(16, 16)
    )
    convs = [
        m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)
    ]
    assert len(convs) == 1 + 2 * 2  # stem + two convs per block
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 5)


@pytest.mark.parametrize("shape", SIZES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("classes", [0, 10])
def test_a_generator_makes_images_of_the_data_shape(
    shape: tuple[int, int, int], classes: int
) -> None:
    from deepline.models.dcgan import DCGANConfig

    torch.manual_seed(0)
    model = build_model(DCGANConfig(width=4), latent_dim=6, num_classes=classes,
                        out_channels=shape[0], image_size=shape[1:])  # fmt: skip
    latent = torch.randn(3, 6 + classes)
    images = model(latent)
    assert images.shape == (3, *shape) and images.abs().max() <= 1.0
    images.sum().backward()
    assert all(p.grad is not None for p in model.generator.parameters())
    model.eval()
    with torch.no_grad():
        alone = torch.cat([model(latent[i : i + 1]) for i in range(3)])
        torch.testing.assert_close(model(latent), alone, atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="multiples of 4"):
        build_model(DCGANConfig(width=4), latent_dim=6, num_classes=0, out_channels=1,
                    image_size=(30, 30))  # fmt: skip


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_a_policy_model_gives_a_score_per_action_and_a_value(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(MODELS.meta(name)["config"](), in_channels=4, num_classes=3)
    x = torch.randn(5, 4)
    out = model(x)
    assert out.shape == (5, 3 + 1)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    with torch.no_grad():  # each row alone as in a batch
        torch.testing.assert_close(model(x), torch.cat([model(r[None]) for r in x]))


@pytest.mark.parametrize("dueling", [False, True])
def test_a_q_network_gives_the_largest_action_value_as_the_value(dueling: bool) -> None:
    torch.manual_seed(0)
    config = MODELS.meta("q_network")["config"](dueling=dueling)
    out = build_model(config, in_channels=4, num_classes=3)(torch.randn(6, 4))
    torch.testing.assert_close(out[:, -1], out[:, :-1].max(1).values)


def test_nbeats_forecasts_the_horizon_from_windows() -> None:
    torch.manual_seed(0)
    config = MODELS.meta("nbeats")["config"](blocks=2, width=16)
    model = build_model(config, num_outputs=6, in_features=2, max_len=24).eval()
    x = torch.randn(4, 24, 2)
    with torch.no_grad():
        out = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(4)])
    assert out.shape == (4, 6)
    torch.testing.assert_close(out, alone, atol=1e-5, rtol=1e-5)
