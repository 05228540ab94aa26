"""Model families. Each is a plain ``nn.Module`` registered with its config class."""

from deepline.models import (  # noqa: F401  (registers the models)
    custom,
    gpt,
    lenet,
    mlp,
    resnet,
    rnn,
    transformer,
)
from deepline.models.build import build_model

__all__ = ["build_model"]
