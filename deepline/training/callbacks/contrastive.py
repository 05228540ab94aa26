"""SimCLR-style contrastive pre-training (``train.method: {name: simclr}``; Chen et al. 2020).

Each step takes a batch of unlabelled images, makes two RandAugment views of each, and trains
the model so that the two views of an image are nearest each other among the batch's 2B
views (NT-Xent, the normalised temperature-scaled cross-entropy). The representation is the
input of the model's output layer (its last hidden layer), read by a forward hook: any image
classifier is an encoder, and its output layer is left for a later run to train
(``model.init_from`` with ``model.freeze`` for a linear probe, or fine-tuning).

After each validation, ``val/knn_accuracy`` measures the representation: each validation
image takes the class of its nearest labelled training image (cosine similarity).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from deepline.config import ContrastiveConfig
from deepline.data.meta import Split
from deepline.data.randaugment import RandAugment
from deepline.errors import ConfigError
from deepline.models.parts import output_layer
from deepline.training.callbacks.unlabelled import Unlabelled, UnlabelledImages

if TYPE_CHECKING:
    from deepline.training.loop import Trainer


def nt_xent(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent of 2B embeddings, where rows i and i + B are two views of one image."""
    z = F.normalize(z.float(), dim=1)
    n = len(z) // 2
    similarity = z @ z.T / temperature
    similarity.fill_diagonal_(float("-inf"))  # a view is not its own positive
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(similarity, positives)


class Contrastive(UnlabelledImages):
    """Installs the contrastive objective; measures the representation after validation."""

    def __init__(
        self, config: ContrastiveConfig, labelled: Split, source: Unlabelled, batch_size: int
    ) -> None:
        super().__init__(source, batch_size, RandAugment(config.strong_ops, config.cutout))
        self.config, self.labelled = config, labelled
        self.features: torch.Tensor | None = None

    def fit_start(self, trainer: Trainer) -> None:
        super().fit_start(trainer)
        for model in {id(m): m for m in (trainer.model, trainer.eval_model)}.values():
            layer = output_layer(model)  # the weights' moving average has its own copy
            if not isinstance(layer, nn.Linear):
                raise ConfigError(
                    f"train.method simclr reads the input of the model's output layer, a "
                    f"Linear layer; {type(layer).__name__} is not one"
                )
            layer.register_forward_hook(self._keep_input)

    def _keep_input(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        self.features = inputs[0]

    def view(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.strong_view(self.weak_view(x, generator), generator)

    def objective(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, _, generator = self.draw()  # the labelled batch and every label go unused
        views = torch.cat([self.view(x, generator), self.view(x, generator)])
        outputs = model(self.trainer.layout(views))
        assert self.features is not None
        # the output layer joins the graph with a zero gradient: DDP expects every parameter
        return nt_xent(self.features.flatten(1), self.config.temperature) + 0.0 * outputs.sum()

    @torch.no_grad()
    def eval_end(self, trainer: Trainer) -> None:
        """1-nearest-neighbour accuracy of the validation images among the labelled ones."""
        loader = trainer.val_loader
        if loader is None:
            return
        model = trainer.eval_model
        was_training = model.training
        model.eval()
        bank = self._embed(model, trainer, self.labelled.x)
        labels = self.labelled.y.to(trainer.device)
        right = total = 0
        for x, y in loader:
            found = labels[(self._embed(model, trainer, x) @ bank.T).argmax(1)]
            right += int((found == y.to(trainer.device)).sum())
            total += len(y)
        model.train(was_training)
        trainer.logs["val/knn_accuracy"] = right / max(total, 1)

    def _embed(self, model: nn.Module, trainer: Trainer, x: torch.Tensor) -> torch.Tensor:
        out = []
        for chunk in x.split(512):
            model(trainer.layout(chunk.to(trainer.device)))
            assert self.features is not None
            out.append(F.normalize(self.features.flatten(1).float(), dim=1))
        return torch.cat(out)
