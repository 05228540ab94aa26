"""Tables: schema inference, fitting on the training split only, missing values, unseen
categories, and the ``tabular`` codec's errors for served rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepline.config import DataConfig
from deepline.data import load_data
from deepline.data.codecs import codec_for
from deepline.data.tabular import CATEGORICAL, NUMERIC, Table, fit_columns, infer_kind
from deepline.errors import DataError, InputError


def write_table(path: Path, rows: int = 40) -> Path:
    lines = ["height,colour,score,group,label"]
    for i in range(rows):
        colour = ("red", "blue", "?")[i % 3]
        height = "" if i == 5 else str(150 + i)
        lines.append(f"{height},{colour},{i % 5},{'ab'[i % 2]},{'yes' if i % 4 else 'no'}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_kinds_are_inferred_and_fitted_on_the_training_rows_only() -> None:
    table = Table({"n": ["1", "2.5", "?", "4"], "c": ["x", "y", "x", ""], "k": ["1", "a", "", "2"]})
    assert [infer_kind(table.columns[k]) for k in "nck"] == [NUMERIC, CATEGORICAL, CATEGORICAL]
    n, c = fit_columns(table, ["n", "c"], {}, "t")
    assert n.mean == pytest.approx(2.5) and n.std == pytest.approx(np.std([1, 2.5, 4]))
    assert c.vocabulary == ["x", "y"]  # by frequency; missing values are not a category
    encoded = c.encode(["y", "x", "?", "never seen", None], "t")
    assert encoded.tolist() == [2, 1, 0, 0, 0]
    assert n.encode(["?", "2.5"], "t").tolist() == [0.0, 0.0]  # missing -> the mean


def test_a_csv_table_trains_with_declared_and_sensitive_columns(tmp_path: Path) -> None:
    path = write_table(tmp_path / "people.csv")
    kinds = {"height": "numeric", "colour": "categorical", "score": "categorical"}
    cfg = DataConfig(name="table", path=str(path), sensitive=["group"], sensitive_input=False,
                     columns=kinds)  # fmt: skip
    data = load_data(cfg)
    assert [c["name"] for c in data.meta.columns] == ["height", "colour", "score"]
    assert data.meta.classes == ["no", "yes"] and data.train.x.shape[1] == 3
    assert set(data.train.groups["group"]) == {"a", "b"}
    train_rows = data.meta.sizes["train"]
    height = data.meta.columns[0]
    assert abs(float(data.train.x[:, 0].mean())) < 1e-5 or train_rows < 40  # standardised
    assert height["std"] > 0


@pytest.mark.parametrize(
    "update,message",
    [
        ({"sensitive": ["nope"]}, "has no column 'nope'"),
        ({"columns": {"weight": "numeric"}}, "data.columns names 'weight'"),
        ({"columns": {"colour": "numeric"}}, "column 'colour' is numeric, got 'red'"),
        ({"label_column": "missing"}, "has no column 'missing'"),
    ],
)
def test_bad_tables_name_the_column(tmp_path: Path, update: dict, message: str) -> None:
    path = write_table(tmp_path / "people.csv")
    with pytest.raises(DataError, match=message):
        load_data(DataConfig(name="table", path=str(path), **update))


@pytest.fixture(scope="module")
def codec(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    path = write_table(tmp_path_factory.mktemp("table") / "people.csv")
    data = load_data(DataConfig(name="table", path=str(path), sensitive=["group"],
                                sensitive_input=False))  # fmt: skip
    return codec_for(data.meta)


def test_served_rows_decode_like_training(codec) -> None:  # type: ignore[no-untyped-def]
    row = {"height": 170, "colour": "blue", "score": 3, "group": "a"}  # group: ignored
    batch = codec.decode([row, {**row, "colour": None}, [None, "red", 1]])
    assert batch.shape == (3, 3) and batch.dtype == np.float32
    assert batch[1, 1] == 0  # a missing category is "unknown"
    colour = np.array([b"blue"], dtype=object)  # a V2 BYTES tensor
    named = codec.decode_named({"height": np.array([170.0]), "colour": colour,
                                "score": np.array([3])})  # fmt: skip
    np.testing.assert_array_equal(named[0], batch[0])


@pytest.mark.parametrize(
    "row,message",
    [
        ({"height": 170, "colour": "blue"}, "lacks the column(s) score"),
        ({"height": 170, "colour": "blue", "score": 1, "heigth": 2}, "unknown column 'heigth'"),
        ({"height": "tall", "colour": "blue", "score": 1}, "column 'height' is numeric"),
        ({"height": True, "colour": "blue", "score": 1}, "column 'height' is numeric"),
        ({"height": 170, "colour": "green", "score": 1}, "column 'colour' has no category 'green'"),
        ("a text", "must be an object naming the columns"),
    ],
)
def test_bad_rows_get_one_clear_error(codec, row: object, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError) as caught:
        codec.decode([row])
    assert message in str(caught.value)


def test_a_parquet_table_reads_like_its_csv(tmp_path: Path) -> None:
    import pandas as pd

    csv_path = write_table(tmp_path / "people.csv")
    frame = pd.read_csv(csv_path, keep_default_na=False, dtype=str)
    frame["score"] = frame["score"].astype(int)  # Parquet keeps types: numbers stay numbers
    frame.to_parquet(tmp_path / "people.parquet")
    from_csv = load_data(DataConfig(name="table", path=str(csv_path)))
    from_parquet = load_data(DataConfig(name="table", path=str(tmp_path / "people.parquet")))
    assert from_parquet.meta.columns == from_csv.meta.columns
    assert np.array_equal(from_parquet.train.x.numpy(), from_csv.train.x.numpy())
