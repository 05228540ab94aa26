"""Federated learning on Flower: the experiment's data, model and task, trained by clients
that each keep their own partition, averaged by a Flower strategy on a server that keeps a
deepline run folder. ``federate(config)`` simulates; ``federate(config, superlink=ADDR)``
sends the run to a deployed SuperLink."""

from __future__ import annotations

from typing import Any


def federate(*args: Any, **kwargs: Any) -> Any:
    """See :func:`deepline.federated.run.federate` (imported when first used: Flower and Ray
    load only for federated work)."""
    from deepline.federated.run import federate as run

    return run(*args, **kwargs)


__all__ = ["federate"]
