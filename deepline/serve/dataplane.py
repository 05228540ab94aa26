"""The serving data plane: one request path behind every protocol.

Find the model and version, decode the inputs with its codec, batch, run, and return the task's
named outputs (``infer``), its answers (``predict``) or generated text (``generate``). deepline's
own API, TensorFlow Serving's REST API and KServe V2 are thin adapters over it: each turns its
wire format into named inputs and back, and writes errors in its own shape.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deepline.errors import validation_problems
from deepline.serve.errors import BadRequest, ServeError
from deepline.serve.served import ModelSet, ServedModel

MAX_INPUTS = 1024  # examples in one request, in every protocol
MAX_PROMPTS = 16  # prompts in one generation request


class GenerateRequest(BaseModel):
    """One prompt to continue, with its sampling settings (every protocol's generation)."""

    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(max_length=100_000)
    max_tokens: int = Field(200, ge=1, le=4096)
    temperature: float = Field(0.8, gt=0.0, le=10.0)
    top_k: int | None = Field(None, ge=1)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = Field(0, ge=0, le=2**63 - 1)


SAMPLING = tuple(name for name in GenerateRequest.model_fields if name != "prompt")
MAX_IMAGES = 64  # images in one generation request


class ImageRequest(BaseModel):
    """Images to make: ``count`` of them from seeds ``seed``, ``seed + 1``, ..., of one class
    when the generator is conditional."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    seed: int = Field(0, ge=0, le=2**63 - 1 - MAX_IMAGES, description="the first image's seed")
    count: int = Field(1, ge=1, le=MAX_IMAGES, description="images, one per seed")
    class_: str | int | None = Field(
        None, alias="class", description="the class to draw (its name or index), for a "
        "conditional generator",
    )  # fmt: skip

    def inputs(self) -> list[dict[str, Any]]:
        """The request as the generator's inputs, one per image."""
        given = {} if self.class_ is None else {"class": self.class_}
        return [{"seed": self.seed + i, **given} for i in range(self.count)]


def generation_request(
    fields: Mapping[str, Any], where: str = "", strict: bool = False
) -> GenerateRequest:
    """``fields`` as a checked GenerateRequest; BadRequest naming each bad field otherwise."""
    try:
        return GenerateRequest.model_validate(dict(fields), strict=strict)
    except ValidationError as err:
        raise BadRequest(
            f"{where}invalid generation request: {validation_problems(err.errors())}"
        ) from None


class DataPlane:
    """Every served model, and the one way requests reach them."""

    def __init__(self, models: ModelSet) -> None:
        self.models = models

    def model(self, request: Request, name: str, version: int | str | None) -> ServedModel:
        """The named model at ``version`` or its latest (404 otherwise), noted on the request
        for the metrics."""
        model = self.models.get(name, version)
        request.state.model = model.labels
        return model

    async def prepare(self, model: ServedModel, inputs: Mapping[str, Any]) -> np.ndarray:
        """Named inputs -> a model-ready batch (encoded images decode off the event loop)."""
        if model.generates:
            raise ServeError(400, f"model '{model.name}' generates text: send a prompt")
        _check_count(inputs)
        if any(_holds_bytes(value) for value in inputs.values()):
            return await asyncio.to_thread(model.predictor.prepare_named, inputs)
        return model.predictor.prepare_named(inputs)  # numbers: cheaper than a thread hop

    async def infer(self, model: ServedModel, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Named inputs -> the task's named outputs, each batch first."""
        batch = await self.prepare(model, inputs)
        return model.predictor.named_outputs(await model.infer(batch), batch)

    async def predict(
        self, model: ServedModel, inputs: Mapping[str, Any], top_k: int | None = None
    ) -> list[Any]:
        """Named inputs -> the task's answers, one per example."""
        named = await self.infer(model, inputs)
        sizes = model.predictor.codec.source_sizes_named(inputs)
        return model.predictor.task.answers_at(named, top_k, sizes)

    async def generate(self, model: ServedModel, requests: Sequence[GenerateRequest]) -> list[str]:
        """The text written for each prompt, in order."""
        if not model.generates:
            if model.predictor.task.generates_images:
                raise ServeError(400, f"model '{model.name}' makes images: send a seed (and a "
                                 "class), not a prompt")  # fmt: skip
            raise ServeError(400, f"model '{model.name}' does not generate: send its inputs")
        if len(requests) > MAX_PROMPTS:
            raise BadRequest(f"at most {MAX_PROMPTS} prompts in one request, got {len(requests)}")
        return [
            await model.generate(
                r.prompt, r.max_tokens, **r.model_dump(exclude={"prompt", "max_tokens"})
            )
            for r in requests
        ]

    async def generate_images(self, model: ServedModel, request: ImageRequest) -> list[Any]:
        """The images an image generator makes for ``request``, each as its task answers
        (a PNG), with its seed and class."""
        if not model.predictor.task.generates_images:
            what = "text: send a prompt" if model.generates else "no images: send its inputs"
            raise ServeError(400, f"model '{model.name}' generates {what}")
        items = request.inputs()
        answers = await self.predict(model, {"": items})
        return [{**item, **answer} for item, answer in zip(items, answers)]


def plane(request: Request) -> DataPlane:
    """The data plane of the app serving ``request``."""
    data_plane: DataPlane = request.app.state.plane
    return data_plane


def _holds_bytes(value: Any) -> bool:
    if isinstance(value, (bytes, bytearray)):
        return True
    if isinstance(value, np.ndarray):
        return value.dtype.kind == "O" and any(isinstance(v, bytes) for v in value.reshape(-1)[:1])
    return isinstance(value, list) and any(isinstance(v, (bytes, bytearray)) for v in value)


def _check_count(inputs: Mapping[str, Any]) -> None:
    for value in inputs.values():
        rows = len(value) if isinstance(value, list) else None
        if isinstance(value, np.ndarray) and value.ndim:
            rows = value.shape[0]
        if rows is not None and rows > MAX_INPUTS:
            raise BadRequest(f"{rows} examples in one request: at most {MAX_INPUTS}")
