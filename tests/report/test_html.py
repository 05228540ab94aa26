"""The run report: self-contained, balanced HTML that shows the run and escapes its text."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from deepline.report import write_report
from tests.report.synthetic_run import CLASSES, FILES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
VOID = {"meta", "img", "br", "hr", "link", "input", "col", "area", "base", "source", "wbr"}
MakeRun = Callable[..., Path]


class _Checker(HTMLParser):
    """Records images and ids, and fails on any end tag that does not close the open one."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.images: list[str] = []
        self.ids: set[str] = set()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(str(values["id"]))
        if tag == "img":
            self.images.append(str(values.get("src")))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(path: Path) -> tuple[_Checker, str]:
    source = path.read_text(encoding="utf-8")
    checker = _Checker()
    checker.feed(source)
    checker.close()
    assert checker.stack == [], f"unclosed tags: {checker.stack}"
    return checker, source


def _png(uri: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    return base64.b64decode(uri[len(prefix) :], validate=True)


def test_full_report(make_run: MakeRun) -> None:
    run = make_run()
    out = write_report(run)
    assert out == run / "report.html"
    page, source = _parse(out)
    text = " ".join(page.text)
    # Self-contained: no scripts, no external resources.
    assert "script" not in page.tags and "link" not in page.tags
    assert "http://" not in source and "https://" not in source
    assert {
        "config",
        "data",
        "learning-curves",
        "metrics",
        "per-class",
        "mistakes",
        "export",
        "environment",
    } <= page.ids
    assert len(page.images) == 4  # learning curves, per-class bars, confusion matrix, mistakes
    assert all(_png(src).startswith(PNG_MAGIC) for src in page.images)
    eval_json = json.loads((run / "eval.json").read_text())
    for value in ("0.9712", "0.9633", "0.9987", "0.1234", "3.000e-06"):
        assert value in text
    assert f"{eval_json['per_class']['f1'][3]:.4g}" in text
    assert ", ".join(CLASSES) in text
    for expected in (
        "digits-mlp",
        "completed",
        "image_classification",
        "mlp",
        "1293",
        "abc123",
        "f00dfeed" * 8,
        "onnxruntime",
        "1 × 8 × 8",
        "test split, checkpoint best",
        "deepline train digits.yaml",
        "model.safetensors",
    ):
        assert expected in text, expected
    assert "Undefined" not in text and "None" not in text  # absent values show as a dash
    assert 'class="bad"' not in source  # safetensors has no parity check: not a failure


def test_escapes_text_from_files(make_run: MakeRun) -> None:
    evil = "<script>alert('x')</script>"
    run = make_run(name=evil)
    # A class name is text from a file too, and a "$" must not trip matplotlib's math mode.
    data = json.loads((run / "eval.json").read_text())
    data["classes"][0] = "<b>$cat$</b>"
    (run / "eval.json").write_text(json.dumps(data))
    page, source = _parse(write_report(run))
    assert "<script" not in source and "<b>" not in source
    assert "&lt;script&gt;alert(" in source
    assert evil in " ".join(page.text)  # shown as text, in the title, header and config
    assert "<b>$cat$</b>" in " ".join(page.text)


@pytest.mark.parametrize(
    ("omit", "absent_ids", "n_images"),
    [
        (("eval.json",), {"per-class"}, 2),
        (("mistakes.npz",), {"mistakes"}, 3),
        (("metrics.jsonl",), set(), 3),
        (("eval.json", "mistakes.npz", "metrics.jsonl"), {"per-class", "mistakes"}, 0),
        (FILES, {"per-class", "mistakes", "export"}, 0),
    ],
)
def test_missing_inputs(
    make_run: MakeRun, omit: tuple[str, ...], absent_ids: set[str], n_images: int
) -> None:
    page, _ = _parse(write_report(make_run(omit=omit)))
    assert not absent_ids & page.ids
    assert len(page.images) == n_images
    text = " ".join(page.text)
    if "metrics.jsonl" in omit:
        assert "Training metrics not available" in text


def test_metrics_fall_back_to_last_epoch(make_run: MakeRun) -> None:
    page, _ = _parse(write_report(make_run(omit=("eval.json",))))
    text = " ".join(page.text)
    assert "last validation (epoch 4, step 400)" in text
    assert "val/accuracy" in text and "0.92" in text


def test_tolerates_corrupt_files(make_run: MakeRun) -> None:
    run = make_run()
    (run / "eval.json").write_text("{not json")
    (run / "config.yaml").write_text("a: [unclosed")
    (run / "mistakes.npz").write_bytes(b"garbage")
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 401, "train/lo')  # a line cut short by a crash
    page, _ = _parse(write_report(run))
    assert len(page.images) == 1  # only the learning curves remain
    assert "a: [unclosed" in " ".join(page.text)  # the raw YAML is still shown


def test_skips_mistakes_that_are_not_images(make_run: MakeRun) -> None:
    run = make_run()
    rows = np.zeros((4, 10), dtype=np.float32)  # a tabular task's misclassified rows
    labels = np.zeros(4, dtype=np.int64)
    np.savez(run / "mistakes.npz", images=rows, true=labels, pred=labels, prob=rows[:, 0])
    page, _ = _parse(write_report(run))
    assert "mistakes" not in page.ids and len(page.images) == 3


def test_failed_export_is_flagged(make_run: MakeRun) -> None:
    run = make_run(omit=("metrics.jsonl", "eval.json", "mistakes.npz"))  # no figures: fast
    export = json.loads((run / "export.json").read_text())
    export["formats"]["onnx"].update(ok=False, max_abs_diff=0.5)
    (run / "export.json").write_text(json.dumps(export))
    _, source = _parse(write_report(run))
    assert '<span class="bad">failed</span>' in source and "0.5" in source


def test_missing_run_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        write_report(tmp_path / "nope")
