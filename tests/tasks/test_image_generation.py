"""Image generation: the latent input, the GAN's split gradients, the Fréchet distance, exact
resume, config errors, and the generator served and written as the same images offline."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepline.config import load_config
from deepline.deploy.export import export_run
from deepline.deploy.predictor import Predictor
from deepline.errors import ConfigError, InputError
from deepline.models.dcgan import DCGAN
from deepline.tasks.image_generation import ImageFeatures
from deepline.tasks.latents import LatentCodec
from deepline.training.checkpoint import list_checkpoints
from deepline.training.experiment import run_training
from tests.cli.test_cli import deepline
from tests.conftest import gan_config, tiny_config
from tests.train.test_checkpoint import assert_same_weights, final_weights

CLASSES = [str(i) for i in range(10)]


# -- the latent input ---------------------------------------------------------------------------


def test_a_seed_and_class_always_give_the_same_latent() -> None:
    codec = LatentCodec.for_generator(6, CLASSES)
    a = codec.decode([{"seed": 42, "class": "7"}, {"seed": 42, "class": 7}])
    assert a.shape == (2, 16) and a.dtype == np.float32
    np.testing.assert_array_equal(a[0], a[1])  # a name or an index
    assert a[0, 6:].tolist() == [0.0] * 7 + [1.0] + [0.0] * 2
    b = codec.decode_named({"seed": np.array([42.0]), "class": np.array(["7"], dtype=object)})
    np.testing.assert_array_equal(a[:1], b)
    noise = a[0, :6].tolist()
    np.testing.assert_array_equal(codec.decode([{"noise": noise, "class": "7"}]), a[:1])


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"seed": 1, "class": "cat"}, "unknown class 'cat'"),
        ({"seed": 1}, "give a 'class'"),
        ({"seed": -1, "class": "1"}, "whole number"),
        ({"seed": 1.5, "class": "1"}, "whole number"),
        ({"seed": 1, "noise": [0.0] * 6, "class": "1"}, "not both"),
        ({"noise": [0.0] * 5, "class": "1"}, "must be 6 numbers"),
        ({"seed": 1, "class": "1", "colour": "red"}, "unknown field 'colour'"),
        ("a seven", "is an object"),
    ],
)
def test_bad_latent_inputs_say_what_is_wrong(item: Any, message: str) -> None:
    with pytest.raises(InputError, match=message):
        LatentCodec.for_generator(6, CLASSES).decode([item])


def test_an_unconditional_generator_takes_no_class() -> None:
    codec = LatentCodec.for_generator(6, [])
    assert codec.decode([{"seed": 3}]).shape == (1, 6)
    with pytest.raises(InputError, match="not conditional"):
        codec.decode([{"seed": 3, "class": "1"}])


@settings(max_examples=80, deadline=None)
@given(
    items=st.lists(
        st.dictionaries(
            st.sampled_from(["seed", "class", "noise", "x"]),
            st.none() | st.integers() | st.floats() | st.text(max_size=4)
            | st.lists(st.floats(), max_size=7),
            max_size=3,
        )
        | st.integers() | st.text(max_size=4),
        min_size=1, max_size=3,
    )
)  # fmt: skip
def test_anything_else_is_an_input_error(items: list[Any]) -> None:
    codec = LatentCodec.for_generator(6, CLASSES)
    try:
        batch = codec.decode(items)
    except InputError:
        return
    assert batch.shape == (len(items), 16) and np.isfinite(batch).all()


# -- training ----------------------------------------------------------------------------------


def test_each_network_gets_only_its_own_losss_gradient() -> None:
    torch.manual_seed(0)
    model = DCGAN(latent_dim=8, num_classes=10, out_channels=1, image_size=(8, 8), width=4)
    latent = torch.cat([torch.randn(4, 8), torch.eye(10)[:4]], 1)

    def moved(net: torch.nn.Module) -> list[bool]:
        return [p.grad is not None and bool(p.grad.abs().sum() > 0) for p in net.parameters()]

    real_d, fake_d, fooled = model(latent, real=torch.rand(4, 1, 8, 8) * 2 - 1)
    fooled.sum().backward(retain_graph=True)  # the generator's loss
    assert not any(moved(model.discriminator)) and all(moved(model.generator))
    model.zero_grad(set_to_none=True)
    (real_d + fake_d).sum().backward()  # the discriminator's
    assert not any(moved(model.generator)) and all(moved(model.discriminator))


def test_a_gan_resumes_exactly(tmp_path: Path) -> None:
    raw = gan_config(epochs=3, checkpoint={"keep_last": 10})
    full = run_training(load_config(raw), tmp_path / "full")
    part = run_training(load_config(raw), tmp_path / "part")
    checkpoints = list_checkpoints(part.run_dir / "checkpoints")
    for later in checkpoints[2:]:  # back to the end of epoch 2
        shutil.rmtree(later)
    resumed = run_training(None, run_dir=part.run_dir)
    assert resumed.trainer.step == full.trainer.step
    assert_same_weights(final_weights(full.run_dir), final_weights(part.run_dir))
    assert resumed.trainer.logs["val/fd"] == full.trainer.logs["val/fd"]
    samples = (part.run_dir / "samples.jsonl").read_text().splitlines()
    assert '"metric": "val/fd"' in samples[-1] and '"png": ' in samples[-1]


@pytest.mark.parametrize("method", ["adversarial", "privacy", "prune"])
def test_classifier_training_methods_are_refused_by_name(method: str, tmp_path: Path) -> None:
    settings_of = {"adversarial": {"eps": 0.1}, "privacy": {"noise_multiplier": 1.0},
                   "prune": {"amount": 0.5}}  # fmt: skip
    raw = gan_config(**{method: settings_of[method]})
    with pytest.raises(ConfigError, match=f"train.{method} with task image_generation"):
        run_training(load_config(raw), tmp_path)


def test_a_gan_learns_images_only(tmp_path: Path) -> None:
    raw = gan_config()
    raw["data"] = {"name": "diabetes"}  # a regression table
    with pytest.raises(ConfigError, match="learns images; dataset 'diabetes' holds features"):
        run_training(load_config(raw), tmp_path)


# -- the Fréchet distance ------------------------------------------------------------------------


def test_the_frechet_distance_is_near_zero_for_the_same_images_and_grows_with_noise() -> None:
    from torchmetrics.image.fid import FrechetInceptionDistance

    torch.manual_seed(0)
    real = torch.rand(400, 1, 4, 4)

    def distance(fake: torch.Tensor) -> float:
        fd = FrechetInceptionDistance(feature=ImageFeatures(None, (1, 4, 4)))
        fd.update(real, real=True)
        fd.update(fake, real=False)
        return float(fd.compute())

    same, shifted = distance(real), distance((real + 0.3).clamp(0, 1))
    assert abs(same) < 1e-3 and shifted > 0.5
    assert distance(torch.rand(400, 1, 4, 4)) < shifted  # another draw of the same law


def test_features_come_from_a_classifier_bundle_of_the_same_images(
    generator_bundle: Path, tmp_path: Path
) -> None:
    classifier = run_training(load_config(tiny_config(epochs=1)), tmp_path / "clf")
    export_run(classifier.run_dir)
    raw = gan_config(epochs=1)
    raw["task"]["features"] = str(classifier.run_dir / "bundle")
    run = run_training(load_config(raw), tmp_path / "gan")
    logs = run.trainer.logs
    assert np.isfinite(logs["val/fd"]) and 0 <= logs["val/class_accuracy"] <= 1
    raw["task"]["features"] = str(generator_bundle)  # a generator is no classifier
    with pytest.raises(ConfigError, match="bundle of task image_generation, which does not"):
        run_training(load_config(raw), tmp_path / "bad")


# -- served and written -------------------------------------------------------------------------


def test_the_evaluation_shows_generated_images(generator_bundle: Path, tmp_path: Path) -> None:
    from deepline.evaluate.evaluate import evaluate_run

    run_dir = generator_bundle.parent
    evaluation = evaluate_run(run_dir)
    assert evaluation["fd_features"] == "pixels" and evaluation["metrics"]["fd"] > 0
    assert (run_dir / "plots" / "generated.png").stat().st_size > 500
    from deepline.report import write_report

    html = write_report(run_dir).read_text()
    assert "Generated images" in html and 'class="samples"' in html  # figure and epoch grids


def test_served_generate_route_gives_the_offline_images(generator_bundle: Path) -> None:
    from deepline.serve.app import create_app
    from deepline.serve.repository import add_bundle
    from deepline.serve.server import BackgroundServer
    from deepline.serve.settings import ServeSettings

    offline = Predictor(generator_bundle).predict([{"seed": 5 + i, "class": "3"} for i in range(3)])
    repository = generator_bundle.parent / "repository"
    add_bundle(generator_bundle, repository, "gan")
    with (
        BackgroundServer(create_app(repository, ServeSettings())) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        made = client.post("/generate/gan", json={"seed": 5, "class": "3", "count": 3})
        assert made.status_code == 200, made.text
        images = made.json()["images"]
        assert [(i["seed"], i["class"]) for i in images] == [(5, "3"), (6, "3"), (7, "3")]
        assert [i["png"] for i in images] == [a["png"] for a in offline]
        bad = client.post("/generate/gan", json={"seed": 5, "class": "cat"})
        assert bad.status_code == 400 and "unknown class 'cat'" in bad.json()["error"]
        prompt = client.post("/generate/gan", json={"prompt": "hello"})
        assert prompt.status_code == 400 and "makes images" in prompt.json()["error"]
        metadata = client.get("/v2/models/gan").json()
        inputs = [(i["name"], i["datatype"]) for i in metadata["inputs"]]
        assert inputs == [("input", "FP32"), ("seed", "INT64"), ("noise", "FP32"),
                          ("class", "BYTES")]  # fmt: skip
        noise = LatentCodec.for_generator(8, CLASSES).latents([5, 6], [3, 3])[:, :8]
        v2 = client.post("/v2/models/gan/infer", json={"inputs": [
            {"name": "noise", "shape": [2, 8], "datatype": "FP32",
             "data": noise.reshape(-1).tolist()},
            {"name": "class", "shape": [2], "datatype": "INT64", "data": [3, 3]}]})  # fmt: skip
        assert v2.status_code == 200, v2.text
        (image,) = v2.json()["outputs"]
        assert image["name"] == "image" and image["shape"] == [2, 1, 8, 8]
        want = Predictor(generator_bundle).run(LatentCodec.for_generator(8, CLASSES).latents(
            [5, 6], [3, 3]))  # fmt: skip
        np.testing.assert_allclose(
            np.array(image["data"]).reshape(2, 1, 8, 8), (want + 1) / 2, atol=1e-6
        )
        too_many = client.post("/generate/gan", json={"seed": 0, "class": "1", "count": 65})
        assert too_many.status_code == 400
        assert client.get("/v2/health/ready").status_code == 200  # still up


def test_generate_command_writes_the_same_pngs(
    generator_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = deepline(
        ["generate", str(generator_bundle), "--seed", "9", "--class", "4", "--count", "2",
         "--out", str(tmp_path)], capsys,
    )  # fmt: skip
    assert code == 0, out + err
    want = Predictor(generator_bundle, "torch").predict([{"seed": 10, "class": "4"}])[0]["png"]
    assert (tmp_path / "seed10_class4.png").read_bytes() == base64.b64decode(want)


# -- GAN augmentation ---------------------------------------------------------------------------


def test_synthetic_images_join_a_few_label_training_split(
    generator_bundle: Path, tmp_path: Path
) -> None:
    raw = tiny_config(epochs=1)
    raw["data"].update(labels_per_class=2, synthetic={"generator": str(generator_bundle),
                                                      "per_class": 3})  # fmt: skip
    run = run_training(load_config(raw), tmp_path / "augmented")
    data = run.data
    assert data.meta.sizes["synthetic"] == 30 and len(data.train) == 20 + 30
    assert data.train.y[20:].tolist() == [c for c in range(10) for _ in range(3)]
    offline = Predictor(generator_bundle, "torch").run(
        LatentCodec.for_generator(8, CLASSES).latents([0], [0])
    )
    unit = (torch.from_numpy(offline) + 1) / 2
    mean, std = data.meta.mean[0], data.meta.std[0]
    torch.testing.assert_close(data.train.x[20:21], (unit.clamp(0, 1) - mean) / std)
    assert '"synthetic": 30' in (run.run_dir / "data.json").read_text()


def test_synthetic_images_need_a_conditional_generator_of_the_same_classes(
    tmp_path: Path,
) -> None:
    classifier = run_training(load_config(tiny_config(epochs=1)), tmp_path / "clf")
    export_run(classifier.run_dir)
    raw = tiny_config(epochs=1)
    raw["data"]["synthetic"] = {"generator": str(classifier.run_dir / "bundle"), "per_class": 2}
    with pytest.raises(ConfigError, match=r"data\.synthetic\.generator=.*not a conditional image"):
        run_training(load_config(raw), tmp_path / "bad")
