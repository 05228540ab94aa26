"""``diabetes``: scikit-learn's bundled diabetes data, for regression; no file needed."""

from __future__ import annotations

from pathlib import Path

from deepline.config import DataConfig
from deepline.data.catalog import DataSample, DatasetSpec, register
from deepline.data.meta import DataSplits
from deepline.data.tables import feature_splits

FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]

DIABETES = DatasetSpec(
    name="diabetes",
    description="scikit-learn's bundled diabetes data: 10 measurements of 442 patients -> "
    "disease progression one year later (regression); no download",
    licence="BSD-3-Clause (scikit-learn)",
    splits={"all": 442},
    homepage="https://www4.stat.ncsu.edu/~boos/var.select/diabetes.html",
    citation="Efron, Hastie, Johnstone, Tibshirani, Least Angle Regression, Annals of "
    "Statistics 32(2), 2004",
    task="regression",
)


def _no_files(folder: Path) -> DataSample:
    return DataSample()


@register(DIABETES, sample=_no_files)
def read_diabetes(cfg: DataConfig, files: dict[str, Path]) -> DataSplits:
    """The raw measurements (age in years, sex 1/2, BMI, blood pressure, six serum values),
    ``data.test_fraction`` held out for test and ``data.val_fraction`` of the rest for
    validation, seeded by ``data.split_seed``; features standardised on the training split."""
    from sklearn.datasets import load_diabetes

    table = load_diabetes(scaled=False)
    return feature_splits(cfg, table.data, table.target, FEATURES, target_names=["progression"])
