"""Tables: UCI Adult with its official split, and ``table``, any CSV or Parquet file of yours
(``data.path``, target in ``data.label_column``); both read through ``deepline.data.tabular``."""

from __future__ import annotations

from pathlib import Path

from deepline.config import DataConfig
from deepline.data.catalog import DataFile, DataSample, DatasetSpec, register
from deepline.data.datasets.images import require_path
from deepline.data.meta import DataSplits
from deepline.data.tabular import Table, read_table, table_splits

ADULT_COLUMNS = (
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
    "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
    "hours-per-week", "native-country", "income",
)  # fmt: skip
ADULT_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/"
ADULT = DatasetSpec(
    name="adult",
    description="UCI Adult (census income): 14 columns of a person, 8 of them categorical -> "
    "income above 50K; missing values as '?'",
    licence="CC BY 4.0",
    folder="uci-adult",
    files=(
        DataFile(
            "adult.data",
            ADULT_URL + "adult.data",
            "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d",
            3974305,
        ),
        DataFile(
            "adult.test",
            ADULT_URL + "adult.test",
            "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05",
            2003153,
        ),
    ),
    classes=("<=50K", ">50K"),
    splits={"train": 32561, "test": 16281},
    homepage="https://archive.ics.uci.edu/dataset/2/adult",
    citation="Becker and Kohavi, Adult, UCI Machine Learning Repository (1996), "
    "https://doi.org/10.24432/C5XW20",
    task="tabular_classification",
)


def _adult_sample(folder: Path) -> DataSample:
    """A few rows in each file's own format (the test file's first line and trailing dots)."""
    rows = [
        "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, "
        "Male, 2174, 0, 40, United-States, <=50K",
        "50, Self-emp-not-inc, 83311, Bachelors, 13, Married-civ-spouse, Exec-managerial, "
        "Husband, White, Male, 0, 0, 13, United-States, >50K",
        "38, Private, 215646, HS-grad, 9, Divorced, Handlers-cleaners, Not-in-family, Black, "
        "Female, 0, 0, 40, ?, <=50K",
        "28, ?, 338409, Bachelors, 13, Married-civ-spouse, Prof-specialty, Wife, Black, "
        "Female, 0, 0, 40, Cuba, >50K",
    ]
    (folder / "adult.data").write_text("\n".join(rows * 6) + "\n")
    test = [r + "." for r in rows]
    (folder / "adult.test").write_text("|1x3 Cross validator\n" + "\n".join(test * 2) + "\n")
    return DataSample({"adult.data": folder / "adult.data", "adult.test": folder / "adult.test"})


@register(ADULT, sample=_adult_sample)
def read_adult(cfg: DataConfig, files: dict[str, Path]) -> DataSplits:
    """The official split (``adult.data`` / ``adult.test``, whose labels end in a dot);
    validation is ``data.val_fraction`` of the training rows."""
    train = read_table(files["adult.data"], header=ADULT_COLUMNS)
    test = read_table(files["adult.test"], header=ADULT_COLUMNS, skip_rows=1)
    for table in (train, test):
        table.columns["income"] = [str(v).strip().rstrip(".") for v in table.columns["income"]]
    train, test = _without_blank_rows(train), _without_blank_rows(test)
    return table_splits(
        cfg, train, test, "income", "adult",
        sources=[f.sha256 for f in ADULT.files], files=[str(p) for p in files.values()],
        classes=list(ADULT.classes),
    )  # fmt: skip


def _without_blank_rows(table: Table) -> Table:
    """Rows with a target (the UCI files end with an empty line)."""
    keep = [i for i, v in enumerate(table.columns["income"]) if str(v).strip()]
    return table.take(keep)


def _table_sample(folder: Path) -> DataSample:
    lines = ["height,colour,score,label"]
    lines += [f"{150 + i},{('red', 'blue', '')[i % 3]},{i % 5},{'yes' if i % 2 else 'no'}"
              for i in range(30)]  # fmt: skip
    (folder / "people.csv").write_text("\n".join(lines) + "\n")
    return DataSample(overrides={"path": str(folder / "people.csv")})


@register(
    DatasetSpec(
        name="table",
        description="your CSV or Parquet table (data.path): named columns, the class in "
        "data.label_column; kinds declared in data.columns or inferred",
        licence="yours",
        needs_path=True,
        task="tabular_classification",
    ),
    sample=_table_sample,
)
def read_table_entry(cfg: DataConfig, files: dict[str, Path]) -> DataSplits:
    path = require_path(cfg, "a .csv or .parquet file")
    return table_splits(cfg, read_table(path), None, cfg.label_column, str(path),
                        files=[str(path)])  # fmt: skip
