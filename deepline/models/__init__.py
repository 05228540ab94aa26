"""Model families. Each is a plain ``nn.Module`` registered with its config class."""

from deepline.models.build import build_model
from deepline.registry import import_modules

import_modules(__name__)  # each module registers its models

__all__ = ["build_model"]
