"""The Flower App's components: ``server_app`` and ``client_app``, as a SuperLink and its
SuperNodes load them for ``flwr run``. The experiment travels in the run config (``config``,
the YAML text; ``run-dir``, where the server keeps the run); each SuperNode says which client
it is, and where its data lives, in its node config::

    flower-supernode --insecure --superlink HOST:PORT \\
        --node-config "partition-id=0 data-dir='/srv/data'"
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flwr.app import Context, Message
from flwr.client import ClientApp
from flwr.client.mod import make_ffn
from flwr.clientapp.typing import ClientAppCallable
from flwr.server import Grid, ServerApp

from deepline.config import ExperimentConfig
from deepline.federated.client import (
    flower_client,
    load_config_text,
    node_partition,
    node_site,
)
from deepline.federated.server import FederatedServer
from deepline.tasks import task_class


def client_mods(config: ExperimentConfig) -> list[Any]:
    """Flower's client mods the config asks for: SecAgg+ outermost, then the clipping of
    client-side DP, nearest the client's update."""
    from flwr.client.mod import fixedclipping_mod, secaggplus_mod

    fed = config.federated
    assert fed is not None
    mods = [secaggplus_mod] if fed.secure_aggregation is not None else []
    if fed.privacy is not None and fed.privacy.side == "client":
        mods.append(fixedclipping_mod)
    return mods


def _run_mods(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """The mods of this run's config (a SuperNode serves whatever run it is sent)."""
    config = load_config_text(str(ctxt.run_config["config"]))
    return make_ffn(call_next, client_mods(config))(msg, ctxt)


def _client_fn(context: Context) -> Any:
    config, node = str(context.run_config["config"]), dict(context.node_config)
    return flower_client(node_partition(node), lambda: node_site(config, node))


client_app = ClientApp(client_fn=_client_fn, mods=[_run_mods])
server_app = ServerApp()


@server_app.main()
def _server_main(grid: Grid, context: Context) -> None:
    config = load_config_text(str(context.run_config["config"]))
    data = task_class(config.task.name).load_data(config.data)
    FederatedServer(config, Path(str(context.run_config["run-dir"])), data).main(grid, context)
