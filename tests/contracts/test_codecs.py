"""The contract of every input codec, bound to the dataset it names: its own sample inputs
decode to the model input it declares (alone, named, or unnamed), its description is plain JSON,
drift summaries give one number per example, and anything else is refused with an InputError
(never another exception)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepline.config import DataConfig
from deepline.data.codecs import INPUT_NAME, InputCodec, codec_for
from deepline.errors import InputError
from deepline.registry import CODECS
from tests.contracts.conftest import sample_data

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=20,
)


@pytest.fixture(scope="module", params=CODECS.names())
def codec(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> InputCodec:
    dataset = CODECS.meta(request.param)["example"]
    _, data = sample_data(DataConfig(name=dataset), tmp_path_factory.mktemp(request.param))
    assert data.meta.codec == request.param
    return codec_for(data.meta)


def _fits(batch: np.ndarray, spec: dict[str, Any], n: int) -> bool:
    shape = [n, *spec["shape"][1:]]
    return batch.dtype == np.dtype(spec["dtype"]) and all(
        want in (-1, got) for want, got in zip(shape, batch.shape)
    ) and len(shape) == batch.ndim  # fmt: skip


def test_sample_inputs_decode_to_the_declared_input(codec: InputCodec) -> None:
    spec = codec.input_spec()
    assert spec["name"] == INPUT_NAME
    samples = codec.sample_inputs(4, seed=1)
    assert json.loads(json.dumps(samples)) == samples  # what a client sends in JSON
    try:
        batch = codec.decode(samples)
    except InputError:  # a codec for prompts reads no batches (the task generates)
        assert codec.name == "text"
        return
    assert _fits(batch, spec, 4) and np.isfinite(batch).all()
    np.testing.assert_array_equal(codec.decode_named({INPUT_NAME: samples}), batch)
    np.testing.assert_array_equal(codec.decode_named({"": samples}), batch)
    summaries = codec.summaries(batch)
    assert summaries and all(len(v) == 4 for v in summaries.values())
    assert codec.tensor_dtypes or codec.takes_bytes


def test_describes_itself_in_plain_json(codec: InputCodec) -> None:
    form = codec.form()
    assert isinstance(form.get("type"), str)
    assert json.loads(json.dumps([form, codec.input_spec()])) == [form, codec.input_spec()]
    kept = json.loads(json.dumps(codec.preprocessing))
    assert kept["codec"] == codec.name and kept["input_shape"] == list(codec.input_shape)
    assert type(codec)(kept).input_spec() == codec.input_spec()  # rebuilt from what it keeps


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(items=st.lists(json_values, min_size=1, max_size=3))
def test_anything_else_is_an_input_error(codec: InputCodec, items: list[Any]) -> None:
    for call in (lambda: codec.decode(items), lambda: codec.decode_named({"x": items})):
        try:
            batch = call()
        except InputError:
            continue
        assert np.isfinite(batch.astype(np.float64)).all()


def test_a_codec_without_an_example_cannot_be_registered(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="without example"):
        CODECS.register("nameless")(object)
