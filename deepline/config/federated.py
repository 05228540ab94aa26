"""The ``federated`` section: the same data, model and task trained by Flower clients, each on
its own partition of the training split, and averaged by a Flower strategy on the server."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from deepline.config.base import Section


class PartitionConfig(Section):
    """How the training split is dealt to the clients (seeded by the experiment's seed)."""

    scheme: Literal["iid", "shards", "dirichlet"] = Field(
        "iid",
        description="iid: equal random shares; shards: sorted by label and cut into "
        "shards, each client taking shards_per_client of them (McMahan et al. 2017's "
        "pathological non-IID); dirichlet: each class spread over the clients in "
        "Dirichlet(alpha) proportions (label skew)",
    )
    shards_per_client: int = Field(2, ge=1, description="for 'shards'")
    alpha: float = Field(0.5, gt=0.0, allow_inf_nan=False, description="for 'dirichlet'")


class ClientPrivacyConfig(Section):
    """Client-level differential privacy (Flower's fixed clipping): each client's update is
    clipped to ``clipping_norm`` and Gaussian noise of std ``noise_multiplier * clipping_norm``
    is added to their sum, on the server or by each client. The guarantee is with respect to
    one client's whole data, accounted like DP-SGD (RDP)."""

    noise_multiplier: float = Field(..., gt=0.0, allow_inf_nan=False)
    clipping_norm: float = Field(..., gt=0.0, allow_inf_nan=False, description="L2, per update")
    side: Literal["server", "client"] = Field(
        "server", description="who clips: the server (it sees updates) or each client"
    )
    delta: float = Field(1e-3, gt=0.0, lt=1.0, description="usually below 1 / clients")


class SecureAggregationConfig(Section):
    """Flower's SecAgg+ (Bell et al. 2020): the server learns only the sum of the updates."""

    num_shares: int = Field(3, ge=3, description="secret shares of each client's key (> 2)")
    reconstruction_threshold: int = Field(2, ge=2, description="shares that rebuild a key")
    clipping_range: float = Field(
        8.0, gt=0.0, description="weights (scaled by each client's share) are clipped to it"
    )
    quantization_range: int = Field(4194304, ge=2, description="levels of the quantization")


class FederatedConfig(Section):
    """Federated training on Flower (``deepline federate``). ``rounds`` replaces
    ``train.epochs``; each client's local training takes ``train``'s optimizer and lr."""

    strategy: Literal["fedavg", "fedprox", "fedadam", "fedyogi"] = Field(
        "fedavg", description="Flower's FedAvg, FedProx, FedAdam or FedYogi"
    )
    rounds: int = Field(10, ge=1)
    clients: int = Field(10, ge=1, description="clients, one partition of the data each")
    clients_per_round: int = Field(10, ge=1, description="sampled to train in each round")
    local_epochs: int = Field(1, ge=1, description="E: passes over its data per round")
    batch_size: int | None = Field(
        None, ge=1, description="B: the clients' batch size (default train.batch_size)"
    )
    partition: PartitionConfig = PartitionConfig()
    proximal_mu: float = Field(
        0.0, ge=0.0, description="FedProx: weight of (mu/2)||w - w_global||^2 in the loss"
    )
    server_lr: float = Field(0.01, gt=0.0, description="FedAdam/FedYogi: the server's step")
    server_tau: float = Field(1e-3, gt=0.0, description="FedAdam/FedYogi: adaptivity")
    track_test: bool = Field(
        False, description="also measure the test split after every round (the curve "
        "federated papers report; never used to choose a checkpoint)",
    )  # fmt: skip
    privacy: ClientPrivacyConfig | None = None
    secure_aggregation: SecureAggregationConfig | None = None

    @model_validator(mode="after")
    def _consistent(self) -> FederatedConfig:
        if self.clients_per_round > self.clients:
            raise ValueError(
                f"federated.clients_per_round ({self.clients_per_round}) is more than "
                f"federated.clients ({self.clients})"
            )
        if self.strategy == "fedprox" and self.proximal_mu == 0.0:
            raise ValueError("strategy fedprox needs federated.proximal_mu > 0 (0 is FedAvg)")
        if self.strategy != "fedprox" and self.proximal_mu > 0.0:
            raise ValueError(
                f"federated.proximal_mu is FedProx's: use strategy fedprox, not {self.strategy}"
            )
        if self.privacy is not None and self.strategy in ("fedadam", "fedyogi"):
            raise ValueError(
                f"federated.privacy sizes its noise for averaged updates, and {self.strategy}'s "
                "per-weight steps could magnify one client's update: use fedavg or fedprox"
            )
        secagg = self.secure_aggregation
        if secagg is not None:
            if secagg.num_shares > self.clients_per_round:
                raise ValueError(
                    f"federated.secure_aggregation.num_shares ({secagg.num_shares}) is more "
                    f"than federated.clients_per_round ({self.clients_per_round})"
                )
            if secagg.reconstruction_threshold > secagg.num_shares:
                raise ValueError(
                    "federated.secure_aggregation.reconstruction_threshold is more than its "
                    "num_shares"
                )
            if self.privacy is not None and self.privacy.side == "server":
                raise ValueError(
                    "federated.secure_aggregation hides each update from the server, so "
                    "federated.privacy.side: server cannot clip them: use side: client"
                )
        return self
