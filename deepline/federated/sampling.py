"""Which clients train in a round: a seeded choice among the connected clients, ordered by
their partition, so a run (and a resumed run) picks the same clients each round wherever the
SuperNodes' random ids put them."""

from __future__ import annotations

import random
from typing import Any

from flwr.common import GetPropertiesIns
from flwr.server.client_manager import SimpleClientManager

PROPERTY = "partition-id"


class SeededClientManager(SimpleClientManager):
    """Flower's client manager with ``sample`` drawn from ``random.Random((seed, round))``
    over the clients sorted by partition id (each client says its own, once)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.seed = seed
        self.round = 0  # set before each round (ResumedRounds)
        self._partition: dict[str, int] = {}

    def partition_of(self, proxy: Any) -> int | None:
        """The client's partition id, asked once; None when it cannot answer (gone)."""
        if proxy.cid not in self._partition:
            try:
                reply = proxy.get_properties(GetPropertiesIns(config={}), None, group_id=0)
            except (ValueError, RuntimeError, TimeoutError):  # Flower's error reply: node gone
                return None
            self._partition[proxy.cid] = int(reply.properties[PROPERTY])
        return self._partition[proxy.cid]

    def sample(
        self, num_clients: int, min_num_clients: int | None = None, criterion: Any = None
    ) -> list[Any]:
        self.wait_for(num_clients if min_num_clients is None else min_num_clients)
        proxies = [p for p in self.clients.values() if criterion is None or criterion.select(p)]
        found = [(part, i, p) for i, p in enumerate(proxies)
                 if (part := self.partition_of(p)) is not None]  # fmt: skip
        ordered = [p for _, _, p in sorted(found, key=lambda t: (t[0], t[1]))]
        if num_clients > len(ordered):
            return []
        chosen = random.Random(f"deepline-clients:{self.seed}:{self.round}").sample(
            range(len(ordered)), num_clients
        )
        return [ordered[i] for i in sorted(chosen)]
