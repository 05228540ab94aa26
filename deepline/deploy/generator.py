"""Generate text from a language-model bundle, on ONNX Runtime (default) or PyTorch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from deepline.deploy.bundle import Bundle, load_bundle
from deepline.deploy.onnx_export import onnx_session
from deepline.errors import DeeplineError
from deepline.tasks.generation import generate


class TextGenerator:
    """Streams text after a prompt.

    >>> g = TextGenerator("runs/shakespeare_char/<time>/bundle")       # doctest: +SKIP
    >>> "".join(g.stream("ROMEO:", tokens=100, seed=0))                 # doctest: +SKIP
    """

    def __init__(self, bundle: str | Path | Bundle, backend: str = "onnx") -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.task = self.bundle.task()
        if self.task.name != "language_modelling":
            raise DeeplineError(
                f"bundle '{self.bundle.path}' is a {self.task.name} model, "
                "not a language model: use `deepline predict`"
            )
        self.tokenizer = self.task.tokenizer  # type: ignore[attr-defined]
        self.context: int = self.task.context  # type: ignore[attr-defined]
        self.backend = backend
        if backend == "onnx":
            path = self.bundle.file("onnx")
            if path is None or not path.is_file():
                raise DeeplineError(
                    f"bundle '{self.bundle.path}' has no ONNX model; use --backend torch"
                )
            session = onnx_session(path)
            self.forward = lambda x: torch.from_numpy(
                session.run(None, {"input": x.numpy().astype(np.int64)})[0]
            )
        elif backend == "torch":
            model = self.bundle.torch_model()
            self.forward = lambda x: model(x)
        else:
            raise DeeplineError(f"unknown backend '{backend}'. Allowed: onnx, torch")

    def stream(
        self,
        prompt: str,
        tokens: int,
        temperature: float = 0.8,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = 0,
    ) -> Iterator[str]:
        """Pieces of text as they are sampled (whole characters, also for byte-level BPE)."""
        ids = self.tokenizer.encode(prompt)  # InputError for characters it cannot encode
        new: list[int] = []
        shown = ""
        for token in generate(
            self.forward,
            ids,
            tokens,
            self.context,
            temperature,
            top_k,
            top_p,
            seed,
            fixed_length=self.backend == "onnx",
        ):
            new.append(token)
            text = self.tokenizer.decode(new)
            if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
                yield text[len(shown) :]
                shown = text
