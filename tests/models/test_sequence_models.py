"""Sequence and language models: shapes, causality, errors, attention capture, ONNX parity."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from deepline.config import load_config
from deepline.deploy.onnx_export import export_onnx, max_abs_difference, onnx_session
from deepline.models import build_model
from deepline.models.attention import capture_attention
from deepline.models.rnn import dynamic_length_export
from deepline.registry import MODELS

SEQUENCE_MODELS = ["lstm", "gru", "transformer", "gpt"]
VOCAB, FEATURES, CLASSES, MAX_LEN = 50, 12, 5, 16
# small sizes keep the file fast; the defaults are covered by the config tests
SMALL: dict[str, dict[str, Any]] = {
    "lstm": {"hidden": 16, "embed_dim": 8},
    "gru": {"hidden": 16, "embed_dim": 8},
    "transformer": {"d_model": 16, "heads": 2, "dropout": 0.0},
    "gpt": {"n_layer": 2, "n_head": 2, "n_embd": 16},
}


def make(
    name: str,
    output: str = "pooled",
    tokens: bool = True,
    num_outputs: int | None = None,
    **fields: Any,
) -> torch.nn.Module:
    """Build as a task does: every shape key given; ``fields`` override the small config."""
    config = MODELS.meta(name)["config"](**{**SMALL[name], **fields})
    shape = {
        "num_outputs": num_outputs or (VOCAB if output == "sequence" else CLASSES),
        "output": output,
        "in_features": None if tokens else FEATURES,
        "vocab_size": VOCAB if tokens else None,
        "max_len": MAX_LEN,
    }
    return build_model(config, **shape)


def inputs(tokens: bool, batch: int = 3, length: int = 10) -> torch.Tensor:
    if tokens:
        return torch.randint(0, VOCAB, (batch, length))
    return torch.randn(batch, length, FEATURES)


def assert_finite_gradients(model: torch.nn.Module, out: torch.Tensor) -> None:
    out.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name


POOLED = [
    ("lstm", {}),
    ("gru", {}),
    ("lstm", {"bidirectional": True, "layers": 1}),
    ("gru", {"bidirectional": True, "dropout": 0.2}),
    ("transformer", {"positions": "learned", "pooling": "cls"}),
    ("transformer", {"positions": "sinusoidal", "pooling": "mean"}),
    ("transformer", {"positions": "sinusoidal", "pooling": "cls"}),
    ("transformer", {"positions": "learned", "pooling": "mean", "layers": 1}),
]


@pytest.mark.parametrize("tokens", [True, False], ids=["tokens", "floats"])
@pytest.mark.parametrize(("name", "fields"), POOLED, ids=lambda v: str(v))
def test_pooled_output_shape_and_gradients(name: str, fields: dict[str, Any], tokens: bool) -> None:
    torch.manual_seed(0)
    model = make(name, "pooled", tokens, **fields)
    out = model(inputs(tokens, batch=3, length=10))
    assert out.shape == (3, CLASSES) and out.dtype == torch.float32
    assert_finite_gradients(model, out)
    assert model(inputs(tokens, batch=2, length=MAX_LEN)).shape == (2, CLASSES)


SEQUENCE = [
    ("lstm", {}, True),
    ("lstm", {}, False),
    ("gru", {}, True),
    ("gru", {"layers": 1}, False),
    ("gpt", {"rotary": False}, True),
    ("gpt", {"rotary": True, "bias": True, "dropout": 0.1}, True),
]


@pytest.mark.parametrize(("name", "fields", "tokens"), SEQUENCE, ids=lambda v: str(v))
def test_sequence_output_shape_and_gradients(
    name: str, fields: dict[str, Any], tokens: bool
) -> None:
    torch.manual_seed(0)
    model = make(name, "sequence", tokens, **fields)
    out = model(inputs(tokens, batch=3, length=10))
    assert out.shape == (3, 10, VOCAB) and out.dtype == torch.float32
    assert_finite_gradients(model, out)


@pytest.mark.parametrize(("name", "fields", "tokens"), SEQUENCE, ids=lambda v: str(v))
def test_sequence_output_is_causal(name: str, fields: dict[str, Any], tokens: bool) -> None:
    """Changing the tokens from position k on leaves the outputs before k exactly unchanged."""
    torch.manual_seed(0)
    model = make(name, "sequence", tokens, **fields).eval()
    x = inputs(tokens, batch=2, length=MAX_LEN)
    k = 9
    changed = x.clone()
    changed[:, k:] = inputs(tokens, batch=2, length=MAX_LEN - k)
    with torch.no_grad():
        before, after = model(x), model(changed)
    assert torch.equal(before[:, :k], after[:, :k])
    assert not torch.allclose(before[:, k:], after[:, k:])  # the change did reach the model


@pytest.mark.parametrize("name", ["lstm", "gru", "transformer"])
def test_eval_is_deterministic_and_batch_independent(name: str) -> None:
    model = make(name, "pooled", tokens=True).eval()
    x = inputs(True, batch=4, length=10)
    with torch.no_grad():
        together = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_bidirectional_sequence_output_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match=r"causal.*bidirectional=True"):
        make(name, "sequence", bidirectional=True)


def test_transformer_refuses_sequence_output() -> None:
    with pytest.raises(ValueError, match="not causal"):
        make("transformer", "sequence")


def test_too_long_inputs_are_refused() -> None:
    gpt = make("gpt", "sequence")
    assert gpt(inputs(True, 1, MAX_LEN)).shape == (1, MAX_LEN, VOCAB)
    message = f"sequence of length {MAX_LEN + 1} is longer than the model's context max_len=16"
    with pytest.raises(ValueError, match=message):
        gpt(inputs(True, 1, MAX_LEN + 1))
    with pytest.raises(ValueError, match="longer than the model's max_len=16"):
        make("transformer")(inputs(True, 1, MAX_LEN + 1))


def test_gpt_argument_errors() -> None:
    with pytest.raises(ValueError, match="token ids only"):
        make("gpt", "sequence", tokens=False)
    with pytest.raises(ValueError, match="output must be 'sequence'"):
        make("gpt", "pooled")
    with pytest.raises(ValueError, match="num_outputs=7, vocab_size=50"):
        make("gpt", "sequence", num_outputs=7)


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_inputs_must_be_described(name: str) -> None:
    config = MODELS.meta(name)["config"]()
    with pytest.raises(ValueError, match=r"in_features .* or vocab_size"):
        build_model(config, num_outputs=3, output="pooled", in_features=None, vocab_size=None)


def test_config_errors_name_the_values() -> None:
    from deepline.models.gpt import GPTConfig
    from deepline.models.transformer import TransformerConfig

    with pytest.raises(ValidationError, match="d_model=10, heads=4"):
        TransformerConfig(d_model=10)
    with pytest.raises(ValidationError, match="n_embd=30, n_head=4"):
        GPTConfig(n_embd=30)
    with pytest.raises(ValidationError, match="rotary needs an even head size"):
        GPTConfig(n_embd=12, n_head=4, rotary=True)
    with pytest.raises(ValidationError, match="extra"):
        GPTConfig(n_layers=2)  # type: ignore[call-arg]


# ------------------------------------------------------------------------ attention maps


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_transformer_attention_capture(pooling: str) -> None:
    torch.manual_seed(0)
    model = make("transformer", pooling=pooling, layers=3).eval()
    x = inputs(True, batch=2, length=7)
    with torch.no_grad():
        fused = model(x)
        with capture_attention(model) as maps:
            explicit = model(x)
    T = 7 + (pooling == "cls")
    assert [tuple(m.shape) for m in maps] == [(2, 2, T, T)] * 3
    for m in maps:
        torch.testing.assert_close(m.sum(-1), torch.ones(2, 2, T))
    torch.testing.assert_close(explicit, fused, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        model(x)
    assert len(maps) == 3  # capturing stopped with the block


@pytest.mark.parametrize("rotary", [False, True])
def test_gpt_attention_capture_is_causal(rotary: bool) -> None:
    torch.manual_seed(0)
    model = make("gpt", "sequence", rotary=rotary).eval()
    x = inputs(True, batch=2, length=9)
    with torch.no_grad():
        fused = model(x)
        with capture_attention(model) as maps:
            explicit = model(x)
    assert [tuple(m.shape) for m in maps] == [(2, 2, 9, 9)] * 2
    for m in maps:
        torch.testing.assert_close(m.sum(-1), torch.ones(2, 2, 9))
        assert torch.all(m.triu(1) == 0)  # nothing from the future
    torch.testing.assert_close(explicit, fused, atol=1e-5, rtol=1e-5)


def test_capture_needs_attention_layers() -> None:
    with pytest.raises(ValueError, match="no SelfAttention"), capture_attention(make("lstm")):
        pass


# ------------------------------------------------------------------------- gpt details


def test_gpt_ties_weights_and_scales_residual_init() -> None:
    torch.manual_seed(0)
    model = make("gpt", "sequence", n_layer=8, n_embd=64, n_head=4)
    assert model.lm_head.weight is model.wte.weight
    params = dict(model.named_parameters())
    assert "lm_head.weight" not in params  # counted once
    assert abs(params["wte.weight"].std().item() - 0.02) < 2e-3
    assert abs(params["blocks.0.attn.proj.weight"].std().item() - 0.02 / 4) < 5e-4
    assert model.num_parameters() == sum(p.numel() for p in model.parameters()) - MAX_LEN * 64
    assert not any("rotary" in key for key in make("gpt", "sequence", rotary=True).state_dict())


# ----------------------------------------------------------------------- configs


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
def test_config_round_trip_and_docstring(name: str) -> None:
    config_cls = MODELS.meta(name)["config"]
    config = config_cls()
    assert config_cls.model_validate(config.model_dump()) == config
    assert config_cls.model_validate_json(config.model_dump_json()) == config
    experiment = load_config({"model": {"name": name, **SMALL[name]}})
    assert isinstance(experiment.model, config_cls)
    doc = MODELS.get(name).__doc__ or ""
    assert "Input" in doc and "Output" in doc


def test_defaults_build_and_ignore_unused_shape_keys() -> None:
    for name in SEQUENCE_MODELS:
        output = "sequence" if name == "gpt" else "pooled"
        config = MODELS.meta(name)["config"]()
        model = build_model(
            config, num_outputs=VOCAB, output=output, in_features=None, vocab_size=VOCAB,
            max_len=64, image_size=(28, 28),
        )  # fmt: skip
        assert model(inputs(True, 2, 64)).shape[0] == 2


# --------------------------------------------------------------------------- ONNX


def export_dynamic(model: torch.nn.Module, example: torch.Tensor, path: Path) -> Path:
    """Like deepline's ``export_onnx``, with the length axis dynamic too (up to max_len)."""
    dims = {
        0: torch.export.Dim("batch", min=1, max=1024),
        1: torch.export.Dim("length", min=1, max=MAX_LEN),
    }
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings(), torch.no_grad(), dynamic_length_export():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model.eval(),
            (example,),
            dynamo=True,
            input_names=["input"],
            output_names=["logits"],
            dynamic_shapes=(dims,),
            opset_version=18,
            verbose=False,
        )
        assert program is not None
        program.save(str(path))
    return path


ONNX_CASES = [
    pytest.param("lstm", "pooled", False, {"bidirectional": True}, id="lstm-bi-floats"),
    pytest.param("gru", "sequence", True, {}, id="gru-seq-tokens"),
    pytest.param("transformer", "pooled", True, {}, id="transformer-cls-learned"),
    pytest.param("gpt", "sequence", True, {"rotary": True}, id="gpt-rotary"),
    pytest.param("lstm", "sequence", True, {}, id="lstm-seq-tokens", marks=pytest.mark.slow),
    pytest.param(
        "gru", "pooled", False, {"bidirectional": True}, id="gru-bi-floats", marks=pytest.mark.slow,
    ),
    pytest.param(
        "transformer", "pooled", False, {"positions": "sinusoidal", "pooling": "mean"},
        id="transformer-mean-sinusoidal", marks=pytest.mark.slow,
    ),
    pytest.param("gpt", "sequence", True, {}, id="gpt-learned", marks=pytest.mark.slow),
]  # fmt: skip


@pytest.mark.parametrize(("name", "output", "tokens", "fields"), ONNX_CASES)
def test_onnx_matches_eager(
    name: str, output: str, tokens: bool, fields: dict[str, Any], tmp_path: Path
) -> None:
    torch.manual_seed(0)
    model = make(name, output, tokens, **fields).eval()
    path = tmp_path / "model.onnx"
    if name == "gpt":  # a fixed context: deepline's own exporter (dynamic batch) as is
        export_onnx(model, inputs(tokens, 2, MAX_LEN), path)
        worst = max_abs_difference(model, path, inputs(tokens, 70, MAX_LEN))
        print(f"{name} {fields}: max |ORT - eager| = {worst:.2e}")
        assert worst <= 1e-4, worst
        return
    export_dynamic(model, inputs(tokens, 3, 10), path)
    session = onnx_session(path)
    dims = session.get_inputs()[0].shape[:2] + session.get_outputs()[0].shape[1:-1]
    assert all(isinstance(d, str) for d in dims), dims  # batch and length stay symbolic
    worst = 0.0
    for batch, length in [(3, 10), (1, 1), (5, 7), (2, MAX_LEN)]:
        x = inputs(tokens, batch, length)
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        assert got.shape == expected.shape
        worst = max(worst, float(np.abs(got - expected).max()))
    print(f"{name} {output} {fields}: max |ORT - eager| = {worst:.2e}")
    assert worst <= 1e-4, worst
