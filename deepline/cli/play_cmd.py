"""``deepline play``: a policy's greedy episodes in its environment, with their returns."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from deepline.cli import app, console


@app.command()
def play(
    bundle: Path = typer.Argument(..., help="a policy's bundle (RUN_DIR/bundle)"),
    env: str = typer.Option(
        None, help="a Gymnasium environment id (default: the one it was trained in)"
    ),
    episodes: int = typer.Option(10, min=1, max=10_000, help="how many episodes to play"),
    seed: int = typer.Option(0, help="episodes use seeds seed, seed + 1, ..."),
    backend: str = typer.Option("onnx", help="onnx, torch, or a format the bundle holds"),
    gif: Path = typer.Option(None, help="write the first episode as an animated GIF here"),
) -> None:
    """Play a policy's greedy action in its environment, episode by episode, and report each
    return and their mean (the same episodes for the same seed).

    Example: `deepline play runs/cartpole_ppo/<time>/bundle --episodes 100`
    """
    from deepline.deploy.predictor import Predictor

    result = Predictor(bundle, backend).play(env, episodes, seed, record=500 if gif else 0)
    table = Table(title=f"{bundle} ({backend}) in {result['env']}")
    for column in ("episode", "seed", "return", "length"):
        table.add_column(column, justify="right")
    shown = result["episodes"] if episodes <= 20 else result["episodes"][:10]
    for i, episode in enumerate(shown):
        table.add_row(str(i + 1), str(episode["seed"]), f"{episode['return']:.1f}",
                      str(episode["length"]))  # fmt: skip
    console.print(table)
    if len(shown) < episodes:
        console.print(f"({episodes - len(shown)} more episodes not shown)")
    console.print(
        f"mean return over {episodes} episodes: [bold]{result['mean_return']:.2f}[/bold] "
        f"(std {result['std_return']:.2f})"
    )
    if gif is not None and result["frames"]:
        from PIL import Image

        frames = [Image.fromarray(f) for f in result["frames"]]
        gif.parent.mkdir(parents=True, exist_ok=True)
        frames[0].save(gif, save_all=True, append_images=frames[1:], duration=40, loop=0)
        console.print(f"wrote {gif} ({len(frames)} frames)")
