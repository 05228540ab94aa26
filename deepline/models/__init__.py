"""Model families. Each is a plain ``nn.Module`` registered with its config class."""

from deepline.models import custom, lenet, mlp, resnet  # noqa: F401  (registers the models)
from deepline.models.build import build_model

__all__ = ["build_model"]
