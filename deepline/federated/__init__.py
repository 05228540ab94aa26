"""Federated learning on Flower: the experiment's data, model and task, trained by clients
that each keep their own partition, averaged by a Flower strategy on a server that keeps a
deepline run folder. ``federate(config)`` simulates; ``federate(config, superlink=ADDR)``
sends the run to a deployed SuperLink."""

from deepline.federated.run import federate

__all__ = ["federate"]
