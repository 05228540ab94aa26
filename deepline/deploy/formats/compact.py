"""``compact``: the ONNX model with its weights stored as Deep Compression stores them (Han et
al. 2016): which weights are non-zero (a bitmask), each non-zero weight as the index of one of
``2^export.compact_bits`` shared values (1-D k-means of that tensor's non-zero weights), and the
whole compressed with LZMA (a standard codec in Python's library) instead of Huffman codes.

``model.compact`` holds every weight (encoded or kept), ``model.graph.onnx`` the graph without
them; the Predictor expands the weights on load and runs the whole on ONNX Runtime. Shared
values change the weights, so the file is judged like ``int8``: the task's primary metric on
the test inputs may drop by at most ``export.int8_max_drop``. Small tensors (biases, norms:
under ``MIN_ENCODED`` values) and non-float ones are kept exactly.
"""

from __future__ import annotations

import lzma
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from safetensors.numpy import load as load_arrays
from safetensors.numpy import save as save_arrays

from deepline.deploy.formats.base import (
    Engine,
    ExportFormat,
    ExportJob,
    metric_check,
    metric_failure,
    on_tensors,
)
from deepline.deploy.onnx_export import onnx_session
from deepline.registry import EXPORTERS

MIN_ENCODED = 256  # tensors smaller than this are kept as they are
GRAPH_FILE = "model.graph.onnx"  # beside model.compact: the graph without its weights


@EXPORTERS.register("compact", order=40)
class CompactFormat(ExportFormat):
    name = "compact"

    def needs(self, job: ExportJob) -> tuple[str, ...]:
        return ("onnx",)

    def export(self, job: ExportJob) -> dict[str, Any]:
        source = job.out / "model.onnx"  # written (and checked) first: see ``needs``
        path = job.out / "model.compact"
        weights, graph = encode_model(onnx.load(str(source)), job.config.compact_bits)
        path.write_bytes(weights)
        (job.out / GRAPH_FILE).write_bytes(graph)
        size, fp32_bytes = path.stat().st_size, (job.out / "model.safetensors").stat().st_size
        total = sum(int(p.numel()) for p in job.model.parameters())
        nonzero = sum(int(p.count_nonzero()) for p in job.model.parameters())
        return {
            "path": path.name,
            "bits": job.config.compact_bits,
            **metric_check(job, on_tensors(self.engine(path)), "compact"),
            "parameters": total,
            "nonzero": nonzero,
            "bytes": size,
            "fp32_bytes": fp32_bytes,
            "times_smaller": fp32_bytes / size,
            "graph": GRAPH_FILE,
            "graph_bytes": (job.out / GRAPH_FILE).stat().st_size,
        }

    def engine(self, path: Path, threads: int | None = None) -> Engine:
        graph = (path.parent / GRAPH_FILE).read_bytes()
        session = onnx_session(decode_model(path.read_bytes(), graph).SerializeToString(), threads)
        return lambda batch: session.run(None, {"input": batch})[0]

    def failure(self, info: dict[str, Any]) -> str:
        return metric_failure("compact", info)


def encode_model(model: onnx.ModelProto, bits: int) -> tuple[bytes, bytes]:
    """(the weights, LZMA-compressed: large float ones encoded as a mask, codes and shared
    values, the others as they are; the graph without them)."""
    arrays: dict[str, np.ndarray] = {}
    for tensor in model.graph.initializer:
        value = numpy_helper.to_array(tensor)
        if value.dtype == np.float32 and value.size >= MIN_ENCODED:
            mask, codes, shared = encode_tensor(value, bits)
            arrays |= {f"{tensor.name}:mask": mask, f"{tensor.name}:codes": codes,
                       f"{tensor.name}:shared": shared,
                       f"{tensor.name}:shape": np.asarray(value.shape, np.int64)}  # fmt: skip
        else:
            arrays[f"{tensor.name}:value"] = value
    del model.graph.initializer[:]
    weights = lzma.compress(save_arrays(arrays), preset=9 | lzma.PRESET_EXTREME)
    return weights, model.SerializeToString()


def decode_model(weights: bytes, graph: bytes) -> onnx.ModelProto:
    """Inverse of :func:`encode_model`: the ONNX model with every weight expanded."""
    arrays = load_arrays(lzma.decompress(weights))
    model = onnx.load_from_string(graph)
    for name in sorted({key.rsplit(":", 1)[0] for key in arrays}):
        if f"{name}:value" in arrays:
            value = arrays[f"{name}:value"]
        else:
            mask, codes = arrays[f"{name}:mask"], arrays[f"{name}:codes"]
            shape = tuple(int(n) for n in arrays[f"{name}:shape"])
            value = decode_tensor(mask, codes, arrays[f"{name}:shared"], shape)
        model.graph.initializer.append(numpy_helper.from_array(value, name))
    return model


def encode_tensor(value: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(packed bitmask of the non-zero weights, each one's code, the shared values)."""
    flat = value.reshape(-1)
    nonzero = flat != 0
    shared = kmeans_1d(flat[nonzero], 2**bits)
    codes = nearest(flat[nonzero], shared).astype(np.uint8)
    return np.packbits(nonzero), codes, shared


def decode_tensor(
    mask: np.ndarray, codes: np.ndarray, shared: np.ndarray, shape: tuple[int, ...]
) -> np.ndarray:
    size = int(np.prod(shape))
    nonzero = np.unpackbits(mask)[:size].astype(bool)
    flat = np.zeros(size, dtype=np.float32)
    flat[nonzero] = shared[codes]
    return flat.reshape(shape)


def kmeans_1d(values: np.ndarray, k: int, iterations: int = 30) -> np.ndarray:
    """``k`` shared values for ``values`` by Lloyd's algorithm from a linear initialisation
    (spread evenly between the smallest and largest value, as Han et al. found best)."""
    if values.size == 0:
        return np.zeros(1, dtype=np.float32)
    centres = np.linspace(values.min(), values.max(), min(k, values.size))
    for _ in range(iterations):
        closest = nearest(values, centres)
        sums = np.bincount(closest, weights=values, minlength=len(centres))
        counts = np.bincount(closest, minlength=len(centres))
        moved = np.where(counts > 0, sums / np.maximum(counts, 1), centres)
        if np.allclose(moved, centres):
            break
        centres = np.sort(moved)
    return centres.astype(np.float32)


def nearest(values: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """The index of the nearest of the sorted ``centres`` to each value."""
    return np.searchsorted((centres[1:] + centres[:-1]) / 2, values)
