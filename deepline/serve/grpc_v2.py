"""KServe V2 (the Open Inference Protocol) over gRPC: ``inference.GRPCInferenceService``, as
KServe and Triton define it, on its own port beside HTTP (``deepline serve --grpc-port``).

The messages and the service stubs are the ones ``tritonclient`` generates from that proto, so
``tritonclient.grpc`` and KServe's gRPC clients talk to it unchanged. It answers ``ServerLive``,
``ServerReady``, ``ModelReady``, ``ServerMetadata``, ``ModelMetadata``, ``ModelInfer`` and
``RepositoryIndex``, and refuses ``RepositoryModelLoad``/``Unload`` (PERMISSION_DENIED: the
repository is fixed, as over HTTP); Triton's own extensions (shared memory, statistics, model
config) answer UNIMPLEMENTED.

Requests go through the same data plane, batcher and checks as HTTP's V2: inputs in typed
``contents`` or ``raw_input_contents`` (little-endian; BYTES elements behind a 4-byte length),
outputs always in ``raw_output_contents``, ``classification`` on a requested output, a
generating model's ``prompt`` with its sampling settings in ``parameters``. A refused request
gets the gRPC status of its HTTP one (INVALID_ARGUMENT for 400, UNAUTHENTICATED, PERMISSION_DENIED,
NOT_FOUND, RESOURCE_EXHAUSTED for 413, UNAVAILABLE for 503, DEADLINE_EXCEEDED for 504) and the
same message.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as rpc

from deepline import __version__
from deepline.errors import DeeplineError
from deepline.serve.dataplane import DataPlane
from deepline.serve.errors import ServeError
from deepline.serve.protocols.kserve import (
    EXTENSIONS,
    classes_of,
    generate_text,
    infer_tensors,
    input_specs,
    output_specs,
    plan_for,
)
from deepline.serve.protocols.kserve_payload import (
    DATATYPES,
    MAX_DIMS,
    MAX_TENSORS,
    InferInput,
    InferRequest,
    OutputTensor,
    ProtocolError,
    RequestedOutput,
    binary_tensor,
    build_outputs,
    to_binary,
)
from deepline.serve.served import ServedModel
from deepline.serve.settings import ServeSettings

# the typed field of InferTensorContents that holds each datatype
CONTENTS = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
    "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
    "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}  # fmt: skip
STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED, 415: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE, 504: grpc.StatusCode.DEADLINE_EXCEEDED,
}  # fmt: skip
Reply = TypeVar("Reply")


def answered(
    method: Callable[..., Awaitable[Reply]],
) -> Callable[..., Awaitable[Reply]]:
    """A service method whose refusals become gRPC statuses (and that checks the token)."""

    @functools.wraps(method)
    async def wrapper(self: InferenceService, request: Any, context: Any) -> Reply:
        try:
            if method.__name__ != "ServerLive":
                self.check_token(context)
            return await method(self, request, context)
        except ServeError as err:
            await context.abort(STATUS.get(err.status, grpc.StatusCode.INTERNAL), err.message)
        except DeeplineError as err:  # the codec's and the task's InputErrors
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        raise AssertionError("unreachable: abort raises")

    return wrapper


class InferenceService(rpc.GRPCInferenceServiceServicer):
    """The V2 service over the data plane every HTTP protocol uses."""

    def __init__(self, plane: DataPlane, token: str | None = None) -> None:
        self.plane, self.token = plane, token

    def check_token(self, context: Any) -> None:
        if not self.token:
            return
        given = dict(context.invocation_metadata() or ()).get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            raise ServeError(401, "a bearer token is required: metadata 'authorization'")

    def model(self, name: str, version: str) -> ServedModel:
        return self.plane.models.get(name, version or None)

    @answered
    async def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    @answered
    async def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=all(m.ready for m in self.plane.models))

    @answered
    async def ModelReady(self, request: Any, context: Any) -> Any:
        return pb.ModelReadyResponse(ready=self.model(request.name, request.version).ready)

    @answered
    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        return pb.ServerMetadataResponse(
            name="deepline", version=__version__, extensions=EXTENSIONS
        )

    @answered
    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        model = self.model(request.name, request.version)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=model.name,
            versions=[str(v) for v in sorted(self.plane.models.models[model.name])],
            platform=f"deepline_{model.predictor.backend}",
            inputs=[tensor(**spec) for spec in input_specs(model)],
            outputs=[tensor(**spec) for spec in output_specs(model)],
        )

    @answered
    async def ModelInfer(self, request: Any, context: Any) -> Any:
        model = self.model(request.model_name, request.model_version)
        parsed = parse_request(request)
        specs, classes = output_specs(model), classes_of(model)
        plan = plan_for(model, parsed, specs, classes)
        if model.generates:
            tensors = await generate_text(self.plane, model, parsed)
        else:
            tensors = await infer_tensors(self.plane, model, parsed)
        return encode_response(model, build_outputs(plan, tensors, specs, classes), parsed.id)

    @answered
    async def RepositoryIndex(self, request: Any, context: Any) -> Any:
        index = pb.RepositoryIndexResponse.ModelIndex
        return pb.RepositoryIndexResponse(models=[
            index(name=m.name, version=str(m.version),
                  state="READY" if m.ready else "UNAVAILABLE", reason="")
            for m in self.plane.models if m.ready or not request.ready
        ])  # fmt: skip

    @answered
    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:
        raise ServeError(403, FIXED_REPOSITORY)

    @answered
    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:
        raise ServeError(403, FIXED_REPOSITORY)


FIXED_REPOSITORY = (
    "models are not loaded or unloaded over gRPC: this server serves a fixed repository "
    "(restart it to change models)"
)


def parse_request(request: Any) -> InferRequest:
    """A ModelInferRequest as the V2 request every protocol shares; ProtocolError naming the
    tensor for anything it cannot read."""
    if not 0 < len(request.inputs) <= MAX_TENSORS:
        raise ProtocolError(f"a request needs 1 to {MAX_TENSORS} inputs, got {len(request.inputs)}")
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise ProtocolError(
            f"raw_input_contents holds {len(raw)} tensors for {len(request.inputs)} inputs"
        )
    inputs = []
    for i, tensor in enumerate(request.inputs):
        name, datatype, shape = tensor.name, tensor.datatype, tuple(tensor.shape)
        if datatype not in DATATYPES:
            raise ProtocolError(f"input '{name}': unknown datatype '{datatype}'")
        if len(shape) > MAX_DIMS or any(d < 0 for d in shape):
            raise ProtocolError(f"input '{name}': shape {list(shape)} is not a tensor's")
        data = _raw(raw[i], datatype, shape, name) if raw else _typed(tensor, shape)
        inputs.append(InferInput(name, datatype, shape, data))
    outputs = [RequestedOutput(out.name, True, _classification(out)) for out in request.outputs]
    parameters = {key: _value(param) for key, param in request.parameters.items()}
    return InferRequest(inputs, outputs or None, request.id or None, parameters)


def _raw(chunk: bytes, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    """One ``raw_input_contents`` entry, read as HTTP's binary tensors are."""
    try:
        return binary_tensor(chunk, datatype, shape, name)
    except ProtocolError as err:  # HTTP's word for the same bytes
        raise ProtocolError(err.message.replace("binary_data_size", "raw_input_contents")) from None


def _typed(tensor: Any, shape: tuple[int, ...]) -> np.ndarray:
    values = list(getattr(tensor.contents, CONTENTS[tensor.datatype]))
    count = int(np.prod(shape))
    if len(values) != count:
        raise ProtocolError(
            f"input '{tensor.name}' has {len(values)} elements in its contents but shape "
            f"{list(shape)} holds {count}"
        )
    if tensor.datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = values
        return array.reshape(shape)
    return np.asarray(values, dtype=DATATYPES[tensor.datatype]).reshape(shape)


def _classification(output: Any) -> int | None:
    if "classification" not in output.parameters:
        return None
    value = _value(output.parameters["classification"])
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ProtocolError(f"output '{output.name}': classification must be a count >= 1")
    return value


def _value(parameter: Any) -> Any:
    kind = parameter.WhichOneof("parameter_choice")
    return None if kind is None else getattr(parameter, kind)


def encode_response(model: ServedModel, outputs: list[OutputTensor], request_id: str | None) -> Any:
    tensor = pb.ModelInferResponse.InferOutputTensor
    return pb.ModelInferResponse(
        model_name=model.name,
        model_version=str(model.version),
        id=request_id or "",
        outputs=[
            tensor(name=o.name, datatype=o.datatype, shape=list(o.data.shape)) for o in outputs
        ],
        raw_output_contents=[to_binary(o.data, o.datatype) for o in outputs],
    )


async def start_grpc(plane: DataPlane, settings: ServeSettings) -> tuple[grpc.aio.Server, int]:
    """The gRPC server on ``settings.host:settings.grpc_port`` (0: a free port), started; and
    the port it listens on. Messages are capped at the HTTP body cap."""
    limit = settings.max_body_bytes
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", limit),
                                      ("grpc.max_send_message_length", 4 * limit)])  # fmt: skip
    rpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(plane, settings.token), server)
    port = server.add_insecure_port(f"{settings.host}:{settings.grpc_port or 0}")
    await server.start()
    return server, port
