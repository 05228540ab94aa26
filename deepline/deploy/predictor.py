"""One Predictor for every task that serves: raw inputs in, answers out.

Raw inputs are what a person or a client has: encoded images (PNG/JPEG bytes), numbers (pixels
in [0, 1] or 0..255, sequences, named features), text. The bundle's input codec turns them into
the model's input, one of the bundle's engines runs it, and the task turns its outputs into
named outputs and answers (classes with probabilities, values, or generated text). It reads
only the bundle: no pickles, no training code.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepline.data.codecs import InputCodec
from deepline.deploy.bundle import Bundle, load_bundle
from deepline.deploy.formats import Engine, export_format
from deepline.deploy.formats.base import torch_engine
from deepline.errors import DeeplineError, InputError
from deepline.registry import EXPORTERS


class Predictor:
    """Runs a bundle on ONNX Runtime (default), eager PyTorch (``torch``) or any other export
    format the bundle holds (``torchscript``, ``int8``: the format's name is the backend).

    >>> p = Predictor("runs/digits_lenet/<time>/bundle")              # doctest: +SKIP
    >>> p.predict([open("seven.png", "rb").read()])[0][0]["class"]    # doctest: +SKIP
    '7'
    >>> lm = Predictor("runs/shakespeare_char/<time>/bundle")         # doctest: +SKIP
    >>> "".join(lm.stream("ROMEO:", tokens=50))                     # doctest: +SKIP
    """

    def __init__(
        self,
        bundle: str | Path | Bundle,
        backend: str = "onnx",
        threads: int | None = None,
        device: str = "cpu",
    ) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.backend = backend
        self.device = device  # where the torch backend runs (auto, cpu, cuda, cuda:N, mps)
        self.task = self.bundle.task()
        self.codec: InputCodec = self.task.codec
        self.signature: dict[str, Any] = self.bundle.spec["signature"]
        self.engine = self._engine(backend, threads)

    # -- what it is ----------------------------------------------------------------------------

    @property
    def generates(self) -> bool:
        """True when the task answers a prompt with generated text (``stream``)."""
        return self.task.generates

    @property
    def classes(self) -> list[str]:
        return list(self.task.meta.classes)

    def describe(self) -> dict[str, Any]:
        """What clients need to know: the task, its inputs (with how people give them), its
        named outputs and answers, and the metrics measured at export."""
        return {
            "name": self.bundle.spec.get("name"),
            "task": self.task.name,
            "generates": self.generates,
            "input_codec": self.codec.name,
            "input_shape": list(self.codec.input_shape),
            "signature": self.signature,
            "inputs": [{**self.codec.input_spec(), "form": self.codec.form()}],
            "outputs": [spec.to_dict() for spec in self.task.outputs()],
            "answer": self.task.answer_form(),
            "classes": self.classes,
            "backend": self.backend,
            "metrics": self.bundle.spec.get("metrics", {}),
        }

    # -- running --------------------------------------------------------------------------------

    def prepare(self, inputs: Sequence[Any]) -> np.ndarray:
        """Raw inputs, one per example -> one model-ready batch (see the input codec)."""
        return self.codec.decode(inputs)

    def prepare_named(self, inputs: Mapping[str, Any]) -> np.ndarray:
        """Named inputs as a protocol parsed them -> one model-ready batch."""
        return self.codec.decode_named(inputs)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Model outputs for a model-ready batch."""
        return self.engine(batch)

    def named_outputs(
        self, outputs: np.ndarray, batch: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """The task's named outputs for a batch's model outputs (``batch``: the model-ready
        inputs, which decisions by group thresholds need)."""
        return self.task.named_outputs(outputs, batch)

    def answers(
        self,
        outputs: np.ndarray,
        top_k: int | None = None,
        batch: np.ndarray | None = None,
        sizes: Sequence[tuple[int, ...]] | None = None,
    ) -> list[Any]:
        """The task's answers; ``sizes``: the inputs' own sizes, which answers in pixels
        are mapped back to."""
        return self.task.answers_at(self.named_outputs(outputs, batch), top_k, sizes)

    def predict(self, inputs: Sequence[Any], top_k: int | None = None) -> list[Any]:
        """Raw inputs -> answers, one per input (masks and boxes in each input's pixels)."""
        batch = self.prepare(inputs)
        return self.answers(self.run(batch), top_k, batch, self.codec.source_sizes(inputs))

    def predict_files(
        self, files: Sequence[str | Path], top_k: int | None = None
    ) -> list[tuple[str, Any]]:
        """(name, answers) for every input the files hold (an .npy may hold a batch); an input
        that cannot be read is an InputError naming it."""
        named = [item for f in files for item in self.codec.read_file(Path(f))]
        batches = []
        for name, item in named:
            try:
                batches.append(self.prepare([item]))
            except InputError as err:
                raise InputError(err if name in str(err) else f"'{name}': {err}") from None
        batch = np.concatenate(batches)
        sizes = self.codec.source_sizes([item for _, item in named])
        answers = self.answers(self.run(batch), top_k, batch, sizes)
        return [(name, answer) for (name, _), answer in zip(named, answers)]

    def stream(
        self,
        prompt: str,
        tokens: int,
        temperature: float = 0.8,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = 0,
    ) -> Iterator[str]:
        """Text a generating model writes after ``prompt``, piece by piece."""
        if not self.generates:
            raise DeeplineError(
                f"bundle '{self.bundle.path}' is a {self.task.name} model: it does not generate"
            )
        fixed = self.backend != "torch"  # exported graphs take exactly `context` tokens
        return self.task.stream(self.run, prompt, tokens, fixed, temperature, top_k, top_p, seed)

    def generate(self, prompt: str, tokens: int, **sampling: Any) -> str:
        return "".join(self.stream(prompt, tokens, **sampling))

    def recommend(
        self,
        user: str | None = None,
        history: Sequence[Any] | None = None,
        k: int = 10,
        include_seen: bool = False,
    ) -> dict[str, Any]:
        """A recommender's ``k`` best items for a known user and/or a history of item ids,
        with titles and scores, and the history they follow; items already seen are left out
        unless ``include_seen``. An unknown user or an empty history gets the most popular
        items with ``fallback="popularity"``; an unknown item id is an InputError.

        >>> recommender = Predictor("runs/ml100k_sasrec/<time>/bundle")  # doctest: +SKIP
        >>> recommender.recommend(user="196", k=3)["items"][0]["title"]  # doctest: +SKIP
        'Star Wars (1977)'
        """
        if not self.task.recommends:
            raise DeeplineError(
                f"bundle '{self.bundle.path}' is a {self.task.name} model: it does not recommend"
            )
        return self.task.recommend(self.run, user, history, k, include_seen)

    def play(
        self, env_id: str | None = None, episodes: int = 10, seed: int = 0, record: int = 0
    ) -> dict[str, Any]:
        """A policy's greedy episodes (seeds ``seed``, ``seed + 1``, ...) in ``env_id`` (the
        environment it was trained in by default): returns, lengths and their mean.

        >>> policy = Predictor("runs/cartpole_ppo/<time>/bundle")  # doctest: +SKIP
        >>> policy.play(episodes=10)["mean_return"]  # doctest: +SKIP
        500.0
        """
        if not self.task.plays:
            raise DeeplineError(
                f"bundle '{self.bundle.path}' is a {self.task.name} model: it does not act"
            )
        return self.task.play(self.run, env_id, episodes, seed, record)

    # -- internals ------------------------------------------------------------------------------

    def _engine(self, backend: str, threads: int | None) -> Engine:
        if backend == "torch":
            from deepline.training.device import resolve_device

            device = resolve_device(self.device)
            return torch_engine(self.bundle.torch_model().to(device), device)
        if backend not in EXPORTERS:
            allowed = ", ".join(["torch", *EXPORTERS.names()])
            raise DeeplineError(f"unknown backend '{backend}'. Allowed: {allowed}")
        path = self.bundle.file(backend)
        if path is None or not path.is_file():
            raise DeeplineError(
                f"bundle '{self.bundle.path}' has no {backend} model; add it with "
                f"`deepline export {self.bundle.path} --format {backend}` or pick another backend"
            )
        return export_format(backend).engine(path, threads)
