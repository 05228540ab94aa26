"""deepline compress: plans, stages as runs, and the trade-off table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from deepline.compress import compress_run
from deepline.compress.plan import Step, parse_plan
from deepline.config import load_config
from deepline.errors import ConfigError
from deepline.training.experiment import run_training
from tests.cli.test_cli import deepline


def test_plans_parse_and_bad_ones_name_the_step() -> None:
    assert parse_plan("prune:0.9, distill,qat") == [Step("prune", 0.9), Step("distill"),
                                                    Step("qat")]  # fmt: skip
    for plan, message in [
        (
            "prune:0.9,int4",
            r"unknown step 'int4'.*Allowed: prune:RATIO, channels:RATIO, distill, qat",
        ),
        ("qat:8", "qat takes no value"),
        ("prune:1.0", "above 0 and below 1"),
        ("prune", "prune needs a ratio"),
        ("distill:2", "distill takes no value"),
        ("", "unknown step ''"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_plan(plan)


def test_each_stage_is_a_run_and_the_table_shows_the_trade_off(
    tiny: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = run_training(load_config(tiny), tmp_path / "runs").run_dir
    result = compress_run(source, "prune:0.6,distill,qat", epochs=1)
    original, pruned, distilled, qat = result["stages"]
    assert [s["stage"] for s in result["stages"]] == [
        "original", "prune-0.6", "prune-0.6 + distill", "prune-0.6 + distill + qat"]  # fmt: skip
    assert original["nonzero"] == original["parameters"]
    assert pruned["nonzero"] < 0.5 * original["nonzero"]
    assert distilled["nonzero"] == qat["nonzero"] == pruned["nonzero"]  # they stay pruned
    assert pruned["weights_gzip_bytes"] < original["weights_gzip_bytes"]
    assert pruned["compact_bytes"] < original["compact_bytes"] < original["weights_bytes"] / 3
    for row in result["stages"]:
        assert 0.0 <= row["score"] <= 1.0 and row["latency_ms"]["64"] > 0
        assert 0.0 <= row["compact_score"] <= 1.0 and 0.0 <= row["int8_score"] <= 1.0
        assert set(row["files"]) >= {"model.safetensors", "model.onnx", "model.compact"}
    stage_dirs = sorted(p.name for p in (source / "compressed").iterdir())
    assert stage_dirs == ["prune-0.6", "prune-0.6_distill", "prune-0.6_distill_qat"]
    stage = load_config(source / "compressed" / "prune-0.6_distill_qat" / "config.yaml")
    assert stage.train.distill is not None and stage.train.distill.teacher == str(source)
    assert stage.train.qat is not None and stage.train.prune is not None
    assert json.loads((source / "compress.json").read_text()) == result
    code, out, _ = deepline(["compress", str(source), "--report"], capsys)
    assert code == 0 and "compression: prune:0.6,distill,qat" in out, out
    code, _, err = deepline(["compress", str(source), "--plan", "prune:2"], capsys)
    assert code != 0 and "above 0 and below 1" in err


def test_channel_pruning_makes_a_narrower_model_that_loads_exports_and_serves(
    tmp_path: Path,
) -> None:
    """Whole channels go (Torch-Pruning across the residual sums), the run, its bundle and
    the next stage rebuild the narrower model from its weights, and ONNX agrees with it."""
    import onnx

    from deepline.deploy.predictor import Predictor
    from deepline.evaluate.loading import load_trained

    train = {"epochs": 2, "batch_size": 64, "num_threads": 1, "tensorboard": False}
    model = {"name": "resnet", "blocks": [1, 1], "width": 16}
    resnet = {"name": "resnet-cp", "data": {"name": "digits"}, "model": model, "train": train}
    source = run_training(load_config(resnet), tmp_path / "runs").run_dir
    result = compress_run(source, "channels:0.5,distill", epochs=1)
    original, narrow, distilled = result["stages"]
    assert narrow["parameters"] < 0.4 * original["parameters"]  # half the channels: ~1/4
    assert narrow["onnx_bytes"] < 0.6 * original["onnx_bytes"]
    assert distilled["parameters"] == narrow["parameters"]  # stays narrow, not pruned again
    stage = source / "compressed" / "channels-0.5"
    run = load_trained(stage)
    widths = [m.out_channels for m in run.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert max(widths) < 32  # the config says up to 32 (16, doubled per stage)
    graph = onnx.load(str(stage / "bundle" / "model.onnx")).graph
    conv_weights = [i for i in graph.initializer if len(i.dims) == 4]
    assert max(i.dims[0] for i in conv_weights) == max(widths)
    x = run.data.test.x[:16]
    with torch.no_grad():
        want = run.model(x).numpy()
    onnx_out = Predictor(stage / "bundle").run(x.numpy())
    torch_out = Predictor(stage / "bundle", "torch").run(x.numpy())
    np.testing.assert_allclose(onnx_out, want, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(torch_out, want, atol=1e-5, rtol=1e-5)
