"""Box annotations: Pascal VOC XML and KITTI label files, read into one form, and the padded
box tensors a detection task trains on.

An image's boxes are rows ``[x1, y1, x2, y2, class]`` in pixels (x to the right, y down,
corners inclusive of the box's extent), ``class`` an index into the dataset's classes, or
:data:`IGNORE` for a region whose objects were not labelled (KITTI's DontCare, VOC's
``difficult``): detections there count neither way. A split's targets are float32
(N, M, 5), each image's boxes padded to the most any image has with rows of class
:data:`PADDING`.

Every problem in an annotation file is a ``DataError`` naming the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from xml.parsers import expat

import numpy as np

from deepline.errors import DataError

PADDING = -1.0  # a row that is no box
IGNORE = -2.0  # a region whose objects were not labelled


@dataclass
class Annotation:
    """One image's labelled boxes: ``names`` and ``boxes`` (n, 4) x1 y1 x2 y2 in pixels,
    ``lines`` where each was written, ``ignored`` whether it marks an unlabelled region."""

    path: Path
    width: int | None
    height: int | None
    names: list[str]
    boxes: np.ndarray
    lines: list[int]
    ignored: list[bool]

    def check(self, width: int, height: int) -> None:
        """A DataError naming the file and line of the first box outside a ``width`` x
        ``height`` image (one pixel of slack for VOC's 1-based corners)."""
        for (x1, y1, x2, y2), line in zip(self.boxes.tolist(), self.lines, strict=True):
            if x1 < -1 or y1 < -1 or x2 > width + 1 or y2 > height + 1:
                raise DataError(
                    f"{self.path}, line {line}: the box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) lies "
                    f"outside its {width}x{height} image"
                )


def read_voc(path: Path) -> Annotation:
    """A Pascal VOC XML file: ``<size>`` and each ``<object>``'s ``name``, ``difficult`` and
    ``<bndbox>``. Parsed with expat, keeping line numbers; a DTD (and so any entity) is
    refused."""
    objects: list[dict[str, str]] = []
    size: dict[str, str] = {}
    stack: list[str] = []
    text: list[str] = []
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)

    def doctype(*_: object) -> None:  # no DTD, so no entity is ever defined or expanded
        raise DataError(
            f"{path}, line {parser.CurrentLineNumber}: a <!DOCTYPE> is not allowed in an "
            "annotation file"
        )

    def start(tag: str, attributes: dict[str, str]) -> None:
        stack.append(tag)
        text.clear()
        if tag == "object":
            objects.append({"line": str(parser.CurrentLineNumber)})

    def end(tag: str) -> None:
        value = "".join(text).strip()
        parents = stack[-3:-1]  # an <object>'s own fields and box, not its <part>s'
        if parents[-1:] == ["size"] and tag in ("width", "height"):
            size[tag] = value
        elif objects and (parents[-1:] == ["object"] or parents == ["object", "bndbox"]):
            objects[-1][tag] = value
        stack.pop()
        text.clear()

    parser.StartDoctypeDeclHandler = doctype
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text.append
    try:
        parser.Parse(path.read_bytes(), True)
    except expat.ExpatError as err:
        raise DataError(f"{path}, line {err.lineno}: not valid XML ({err})") from None
    except OSError as err:
        raise DataError(f"{path} could not be read ({err})") from None
    names, boxes, lines, ignored = [], [], [], []
    for obj in objects:
        line = int(obj["line"])
        missing = [k for k in ("name", "xmin", "ymin", "xmax", "ymax") if not obj.get(k)]
        if missing:
            raise DataError(f"{path}, line {line}: an <object> without {', '.join(missing)}")
        try:
            box = [float(obj[k]) for k in ("xmin", "ymin", "xmax", "ymax")]
        except ValueError:
            raise DataError(f"{path}, line {line}: a <bndbox> value is not a number") from None
        names.append(obj["name"])
        boxes.append(box)
        lines.append(line)
        ignored.append(obj.get("difficult", "0") == "1")
    width, height = (_int(size.get(k), path, k) for k in ("width", "height"))
    return Annotation(path, width, height, names, _boxes(boxes), lines, ignored)


def read_kitti(path: Path, ignore: frozenset[str] = frozenset({"DontCare"})) -> Annotation:
    """A KITTI label file: one object per line, its type then 14 numbers, of which 4 to 7 are
    the 2-D box ``left top right bottom``; types in ``ignore`` mark unlabelled regions."""
    names, boxes, lines, ignored = [], [], [], []
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path} could not be read ({err})") from None
    for number, row in enumerate(content.splitlines(), start=1):
        fields = row.split()
        if not fields:
            continue
        if len(fields) not in (15, 16):  # 16: with a score, as in result files
            raise DataError(
                f"{path}, line {number}: a KITTI label has 15 fields (type and 14 numbers), "
                f"this line has {len(fields)}"
            )
        try:
            box = [float(v) for v in fields[4:8]]
        except ValueError:
            raise DataError(f"{path}, line {number}: the 2-D box is not 4 numbers") from None
        names.append(fields[0])
        boxes.append(box)
        lines.append(number)
        ignored.append(fields[0] in ignore)
    return Annotation(path, None, None, names, _boxes(boxes), lines, ignored)


def targets(
    annotations: list[Annotation], classes: list[str], scales: list[tuple[float, float]],
    skip: frozenset[str] = frozenset(),
) -> np.ndarray:  # fmt: skip
    """Annotations -> float32 (N, M, 5) padded box rows, each image's boxes scaled by its
    (sx, sy). Boxes of no extent are dropped (a known BCCD quirk); names in ``skip`` are left
    out; any other name not in ``classes`` is a DataError naming the file and line."""
    index = {c: i for i, c in enumerate(classes)}
    rows: list[np.ndarray] = []
    for annotation, (sx, sy) in zip(annotations, scales, strict=True):
        kept = []
        for name, box, line, ignored in zip(annotation.names, annotation.boxes.tolist(),
                                            annotation.lines, annotation.ignored):  # fmt: skip
            x1, y1, x2, y2 = box
            if x2 < x1 or y2 < y1:
                raise DataError(
                    f"{annotation.path}, line {line}: the box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) "
                    "ends before it starts (x2 < x1 or y2 < y1)"
                )
            if x2 == x1 or y2 == y1 or name in skip:  # no extent: a known BCCD quirk
                continue
            if ignored:
                label = IGNORE
            elif name in index:
                label = float(index[name])
            else:
                raise DataError(
                    f"{annotation.path}, line {line}: unknown class '{name}'; the classes are "
                    f"{', '.join(classes)}"
                )
            kept.append([x1 * sx, y1 * sy, x2 * sx, y2 * sy, label])
        rows.append(np.asarray(kept, np.float32).reshape(-1, 5))
    most = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), max(most, 1), 5), PADDING, np.float32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def _boxes(rows: list[list[float]]) -> np.ndarray:
    return np.asarray(rows, np.float64).reshape(-1, 4)


def _int(value: str | None, path: Path, field: str) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        raise DataError(f"{path}: <size> <{field}> is not a number: {value!r}") from None
