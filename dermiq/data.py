"""Real dermatology data sets -> the common RL records (README "Data formats"), split train/val/test; torch-free.

`import_data` reads HAM10000, Fitzpatrick17k, SCIN, DermNet class folders or a JSONL of ``image``/``label`` rows,
maps every label to a KG condition (dataset codes and aliases through the KG lexicon), checks every image (present,
decodable, not a decompression bomb) and writes ``train.jsonl``, ``val.jsonl``, ``test.jsonl`` whose images are
referenced (relative to the output folder), not copied. A bad row is skipped and counted by reason, never fatal;
splits keep every lesion (HAM10000 ``lesion_id``) or case (SCIN ``case_id``) in one split, and are stratified by
label and deterministic for a seed.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from knowledge_graph.kg import KnowledgeGraph
from knowledge_graph.lexicon import normalize
from training.atomic import atomic_jsonl
from training.data import images
from training.errors import DataError

from .prompts import build_prompt

FORMATS = ("ham10000", "fitzpatrick17k", "scin", "dermnet", "jsonl")
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MAX_PIXELS = images.MAX_PIXELS
EXAMPLES = 3  # first examples kept per skip reason
SCIN_MAX_IMAGES = 3
_MAX_LITERAL = 10_000  # characters of a SCIN label dict we are willing to parse


class RowError(Exception):
    """A source row that cannot become a record: ``reason`` is the summary's counter key."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class Row:
    """One source row before its images are checked: what it shows, its label, the unit a split must keep whole."""

    images: list[Path]
    label: str
    group: str
    meta: dict
    declared: str | None = None  # a split the source fixes (DermNet's test/ folder, a JSONL 'split')
    prompt: list[dict] | None = None  # a JSONL row's own messages
    prefix: str = ""  # dataset_label id namespace in the KG ('ham10000', 'fitzpatrick17k')
    where: str = ""


@dataclass
class Summary:
    """Counts the CLI prints; ``as_dict`` is the ``--json`` output."""

    kept: int = 0
    reasons: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    unmapped: Counter = field(default_factory=Counter)
    images_dropped: int = 0

    def skip(self, where: str, err: RowError) -> None:
        self.reasons[err.reason] += 1
        shown = self.examples.setdefault(err.reason, [])
        if len(shown) < EXAMPLES:
            shown.append(f"{where}: {err}")


# ---- images ---------------------------------------------------------------------------------------------------
def check_image(path: Path, max_pixels: int = MAX_PIXELS) -> None:
    """Raise RowError unless the file is a decodable image within the pixel limit (checked before decoding)."""
    try:
        images.check_image(path, max_pixels, decode=True)  # decodes every byte: a truncated file fails here
    except images.ImageError as e:
        raise RowError(e.reason, str(e)) from None


def image_index(root: Path) -> dict[str, Path]:
    """File stem -> image path under ``root`` (shallowest first), so ``<image_id>.jpg`` is found in any sub-folder."""
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in sorted(os.walk(root), key=lambda t: (t[0].count(os.sep), t[0])):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.suffix.lower() in IMAGE_SUFFIXES:
                found.setdefault(p.stem, p)
    return found


# ---- tables ---------------------------------------------------------------------------------------------------
def find_file(path: Path, name: str) -> Path:
    """``path`` itself when it is a file, else ``name`` inside it (searched recursively)."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise DataError(f"{path}: no such file or folder")
    direct = path / name
    if direct.is_file():
        return direct
    hits = sorted(path.rglob(name), key=lambda p: (len(p.parts), str(p)))
    if not hits:
        raise DataError(f"{path}: no {name} in this folder")
    return hits[0]


def read_table(
    path: Path, required: tuple[str, ...], what: str, optional: tuple[str, ...] = ()
) -> list[dict]:
    """CSV rows as dicts; a file without the expected columns is one line naming them."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            cols = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in required if c not in cols]
            if missing:
                opt = f" (optional: {', '.join(optional)})" if optional else ""
                raise DataError(
                    f"{path}: not a {what} file: expected columns {', '.join(required)}{opt}; "
                    f"found {', '.join(cols) or 'none'}"
                )
            return [
                {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
                for row in reader
            ]
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a text CSV file ({e.reason})") from None


def _need(row: dict, col: str) -> str:
    value = row.get(col, "")
    if not value:
        raise RowError("bad_field", f"field {col!r} is empty")
    return value


def _age(text: str) -> float | None:
    if not text:
        return None
    try:
        age = float(text)
    except ValueError:
        raise RowError("bad_field", f"field 'age': expected a number, got {text!r}") from None
    if not 0 <= age <= 120:
        raise RowError("bad_field", f"field 'age': {text!r} is not an age in years")
    return age


def _fitzpatrick(text: str, col: str) -> int | None:
    """1-6 (also 'FST3', 'III'); empty, -1, 'NONE_SELECTED' mean unknown."""
    t = text.strip().upper().removeprefix("FST").removeprefix("TYPE").strip()
    if t in ("", "-1", "NONE_SELECTED", "NONE", "UNKNOWN", "NAN"):
        return None
    roman = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6}
    try:
        value = roman.get(t) or int(float(t))
    except ValueError:
        raise RowError("bad_field", f"field {col!r}: expected a Fitzpatrick type 1-6, got {text!r}") from None
    if not 1 <= value <= 6:
        raise RowError("bad_field", f"field {col!r}: expected a Fitzpatrick type 1-6, got {text!r}")
    return value


# ---- readers: each yields (where, Row or RowError) ------------------------------------------------------------
def read_ham10000(path: Path) -> Iterator[tuple[str, Row | RowError]]:
    """HAM10000_metadata.csv; images <image_id>.jpg in HAM10000_images_part_1/ and _part_2/ (any sub-folder)."""
    table = find_file(path, "HAM10000_metadata.csv")
    rows = read_table(
        table,
        ("lesion_id", "image_id", "dx"),
        "HAM10000 metadata",
        ("dx_type", "age", "sex", "localization", "dataset"),
    )
    index = image_index(table.parent)
    for i, r in enumerate(rows, start=2):
        where = f"{table.name}:{i}"
        try:
            image_id, lesion_id, dx = _need(r, "image_id"), _need(r, "lesion_id"), _need(r, "dx")
            meta = {
                "image_id": image_id,
                "lesion_id": lesion_id,
                "dataset_label": dx,
                "dx_type": r.get("dx_type") or None,
                "age": _age(r.get("age", "")),
                "sex": r.get("sex") or None,
                "site": r.get("localization") or None,
            }
            if r.get("dataset"):
                meta["dataset"] = r["dataset"]
            if image_id not in index:
                raise RowError(
                    "missing_image",
                    f"{image_id}.jpg is in no folder under {table.parent} (HAM10000 ships its images in "
                    "HAM10000_images_part_1/ and HAM10000_images_part_2/: unpack both there)",
                )
            yield (
                where,
                Row([index[image_id]], dx, f"lesion:{lesion_id}", meta, prefix="ham10000", where=where),
            )
        except RowError as e:
            yield where, e


def read_fitzpatrick17k(path: Path) -> Iterator[tuple[str, Row | RowError]]:
    """fitzpatrick17k.csv; images <md5hash>.jpg anywhere under the CSV's folder. QC 'wrongly labelled' rows are skipped."""
    table = find_file(path, "fitzpatrick17k.csv")
    rows = read_table(
        table,
        ("md5hash", "label"),
        "Fitzpatrick17k",
        ("fitzpatrick_scale", "nine_partition_label", "three_partition_label", "qc", "url"),
    )
    index = image_index(table.parent)
    for i, r in enumerate(rows, start=2):
        where = f"{table.name}:{i}"
        try:
            md5, label = _need(r, "md5hash"), _need(r, "label")
            if "wrongly labelled" in r.get("qc", "").lower():
                raise RowError("qc_wrong_label", f"quality control marks {md5} as wrongly labelled")
            meta = {
                "image_id": md5,
                "dataset_label": label,
                "fitzpatrick": _fitzpatrick(r.get("fitzpatrick_scale", ""), "fitzpatrick_scale"),
                "nine_partition_label": r.get("nine_partition_label") or None,
                "three_partition_label": r.get("three_partition_label") or None,
            }
            if r.get("qc"):
                meta["qc"] = r["qc"]
            image = index.get(md5, table.parent / f"{md5}.jpg")
            yield where, Row([image], label, f"image:{md5}", meta, prefix="fitzpatrick17k", where=where)
        except RowError as e:
            yield where, e


def scin_top_label(text: str) -> tuple[str, float, dict[str, float]]:
    """SCIN's ``weighted_skin_condition_label`` (a Python dict in a string) -> (top label, its weight, all weights).

    Parsed with ``ast.literal_eval`` (never ``eval``), size-capped; ties go to the first listed label.
    """
    if not text or text in ("{}", "nan", "NaN"):
        raise RowError("no_label", "no dermatologist label (weighted_skin_condition_label is empty)")
    if len(text) > _MAX_LITERAL:
        raise RowError(
            "bad_field", f"field 'weighted_skin_condition_label': {len(text)} characters is too long"
        )
    try:
        weights = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise RowError(
            "bad_field", f"field 'weighted_skin_condition_label': not a dict of weights: {text[:60]!r}"
        ) from None
    if (
        not isinstance(weights, dict)
        or not weights
        or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
            for k, v in weights.items()
        )
    ):
        raise RowError(
            "bad_field",
            f"field 'weighted_skin_condition_label': expected {{label: weight}}, got {text[:60]!r}",
        )
    top = max(weights, key=lambda k: weights[k])  # max keeps the first of equal weights
    return top, float(weights[top]), {k: float(v) for k, v in weights.items()}


def _scin_image(root: Path, index: dict[str, Path], rel: str) -> Path:
    """A SCIN path ('dataset/images/123.png') under the root, or the file of that name anywhere below it."""
    p = Path(rel)
    for cand in (p if p.is_absolute() else root / p, root / p.name):
        if cand.is_file():
            return cand
    return index.get(p.stem, root / p)


def read_scin(path: Path) -> Iterator[tuple[str, Row | RowError]]:
    """scin_cases.csv joined to scin_labels.csv on case_id; up to 3 images per case; the case is the split unit."""
    cases_file = find_file(path, "scin_cases.csv")
    labels_file = find_file(cases_file.parent if path.is_file() else path, "scin_labels.csv")
    cases = read_table(
        cases_file,
        ("case_id", "image_1_path"),
        "SCIN cases",
        ("image_2_path", "image_3_path", "age_group", "sex_at_birth", "fitzpatrick_skin_type"),
    )
    labels = {
        r["case_id"]: r
        for r in read_table(
            labels_file,
            ("case_id", "weighted_skin_condition_label"),
            "SCIN labels",
            ("dermatologist_fitzpatrick_skin_type_label_1",),
        )
    }
    root = cases_file.parent
    index = image_index(root)
    for i, r in enumerate(cases, start=2):
        where = f"{cases_file.name}:{i}"
        try:
            case_id = _need(r, "case_id")
            lab = labels.get(case_id)
            if lab is None:
                raise RowError("no_label", f"case {case_id} has no row in {labels_file.name}")
            top, weight, weights = scin_top_label(lab.get("weighted_skin_condition_label", ""))
            rels = [r[c] for c in (f"image_{k}_path" for k in range(1, SCIN_MAX_IMAGES + 1)) if r.get(c)]
            if not rels:
                raise RowError("missing_image", f"case {case_id} lists no image")
            images = [_scin_image(root, index, rel) for rel in rels]
            sites = sorted(
                c.removeprefix("body_parts_")
                for c, v in r.items()
                if c.startswith("body_parts_") and v.upper() == "YES"
            )
            meta = {
                "case_id": case_id,
                "image_ids": [Path(x).stem for x in rels],
                "dataset_label": top,
                "label_weight": weight,
                "weighted_labels": weights,
                "fitzpatrick": _fitzpatrick(
                    lab.get("dermatologist_fitzpatrick_skin_type_label_1", ""),
                    "dermatologist_fitzpatrick_skin_type_label_1",
                ),
                "fitzpatrick_self": _fitzpatrick(r.get("fitzpatrick_skin_type", ""), "fitzpatrick_skin_type"),
                "age": r.get("age_group") or None,
                "sex": r.get("sex_at_birth") or None,
                "site": sites or None,
            }
            yield where, Row(images, top, f"case:{case_id}", meta, where=where)
        except RowError as e:
            yield where, e


def read_dermnet(path: Path) -> Iterator[tuple[str, Row | RowError]]:
    """``train/<class>/*.jpg`` and ``test/<class>/*.jpg`` (test stays test), or ``<class>/*.jpg`` pooled."""
    if not path.is_dir():
        raise DataError(
            f"{path}: expected a DermNet folder with train/<class>/ and test/<class>/ (or <class>/) folders"
        )
    split_dirs = [d for d in ("train", "test") if (path / d).is_dir()]
    roots = [(path / d, d) for d in split_dirs] or [(path, None)]
    n = 0
    for root, split in roots:
        for cls in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")):
            for img in sorted(p for p in cls.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
                n += 1
                rel = img.relative_to(path).as_posix()
                meta = {"image_id": img.stem, "dataset_label": cls.name, "dermnet_split": split}
                yield (
                    rel,
                    Row(
                        [img],
                        cls.name,
                        f"image:{rel}",
                        meta,
                        declared="test" if split == "test" else None,
                        where=rel,
                    ),
                )
    if n == 0:
        raise DataError(
            f"{path}: no images in train/<class>/, test/<class>/ or <class>/ folders "
            f"(expected {', '.join(IMAGE_SUFFIXES)} files)"
        )


def _jsonl_prompt(messages: object) -> list[dict]:
    """A JSONL row's own messages -> the prompt: the non-assistant turns, with exactly one image slot."""
    if (
        not isinstance(messages, list)
        or not messages
        or not all(
            isinstance(m, dict)
            and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), (str, list))
            for m in messages
        )
    ):
        raise RowError("bad_field", "field 'messages': expected a list of {role, content} messages")
    prompt = [dict(m) for m in messages if m["role"] != "assistant"]
    users = [m for m in prompt if m["role"] == "user"]
    if not users:
        raise RowError("bad_field", "field 'messages': expected a user message")
    slots = sum(
        1
        for m in prompt
        if isinstance(m["content"], list)
        for p in m["content"]
        if isinstance(p, dict) and p.get("type") == "image"
    )
    if slots > 1:
        raise RowError("bad_field", f"field 'messages': {slots} image slots for one image")
    if slots == 0:  # the image goes before the user's first words
        first = users[0]
        text = first["content"]
        first["content"] = [
            {"type": "image"},
            *([{"type": "text", "text": text}] if isinstance(text, str) else text),
        ]
    return prompt


def read_jsonl(path: Path) -> Iterator[tuple[str, Row | RowError]]:
    """Rows ``{"image": path, "label": name, "messages"?: [...], "id"?: ..., "split"?: ...}``; other scalars go to meta."""
    if not path.is_file():
        raise DataError(f'{path}: expected a JSONL file of {{"image", "label"}} rows')
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path.name}:{i}"
        try:
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise RowError("bad_field", f"not valid JSON ({e})") from None
            if (
                not isinstance(obj, dict)
                or not isinstance(obj.get("image"), str)
                or not isinstance(obj.get("label"), str)
            ):
                raise RowError("bad_field", "expected an object with string fields 'image' and 'label'")
            img = Path(obj["image"])
            image = img if img.is_absolute() else path.parent / img
            prompt = _jsonl_prompt(obj["messages"]) if obj.get("messages") is not None else None
            split = obj.get("split")
            if split is not None and split not in SPLITS:
                raise RowError(
                    "bad_field", f"field 'split': expected one of {', '.join(SPLITS)}, got {split!r}"
                )
            rid = str(obj.get("id") or obj["image"])
            meta = {
                k: v
                for k, v in obj.items()
                if k not in ("image", "label", "messages", "split")
                and isinstance(v, (str, int, float, bool, type(None)))
            }
            meta.update({"image_id": rid, "dataset_label": obj["label"]})
            yield (
                where,
                Row([image], obj["label"], f"id:{rid}", meta, declared=split, prompt=prompt, where=where),
            )
        except RowError as e:
            yield where, e


READERS = {
    "ham10000": read_ham10000,
    "fitzpatrick17k": read_fitzpatrick17k,
    "scin": read_scin,
    "dermnet": read_dermnet,
    "jsonl": read_jsonl,
}


# ---- labels and splits ----------------------------------------------------------------------------------------
def condition_of(kg: KnowledgeGraph, label: str, prefix: str = "", groups: bool = False) -> str | None:
    """The KG condition a dataset label names: its dataset code first ('ham10000/akiec'), then any name or alias.

    ``groups`` also accepts a category with member conditions: DermNet's 23 class folders each gather several
    diseases ('Eczema Photos'), and the KG models them as such groups, not as one condition.
    """
    ids = [kg.canonical(f"dataset_label:{prefix}/{normalize(label).replace(' ', '_')}")] if prefix else []
    for nid in [*ids, kg.canonical(label)]:
        if nid is None:
            continue
        if kg.type(nid) == "condition" or (groups and kg.type(nid) == "category" and kg.members(nid)):
            return nid
    return None


def _rank(seed: int, group: str) -> str:
    return hashlib.blake2b(f"{seed}\x00{group}".encode(), digest_size=8).hexdigest()


def assign_splits(
    groups: dict[str, tuple[str, str | None]], val_frac: float, test_frac: float, seed: int
) -> dict[str, str]:
    """Group -> split. Groups sorted by label, then by a seeded hash, are dealt out systematically, so every label
    gets its share of val/test and the totals match the fractions; a declared split (DermNet test/) stands."""
    out = {g: d for g, (_, d) in groups.items() if d is not None}
    pooled = sorted((g for g in groups if g not in out), key=lambda g: (groups[g][0], _rank(seed, g)))
    acc_val = acc_test = 0.5
    for g in pooled:
        acc_val += val_frac
        acc_test += test_frac
        if acc_val >= 1:
            acc_val -= 1
            out[g] = "val"
        elif acc_test >= 1:
            acc_test -= 1
            out[g] = "test"
        else:
            out[g] = "train"
    return out


# ---- the import -----------------------------------------------------------------------------------------------
def _usable_images(row: Row, max_pixels: int, summary: Summary) -> list[Path]:
    """Images that pass ``check_image``; a multi-image case (SCIN) keeps the good ones, counting the dropped."""
    good, first_err = [], None
    for img in row.images:
        try:
            check_image(img, max_pixels)
            good.append(img)
        except RowError as e:
            first_err = first_err or e
    if not good:
        raise first_err or RowError("missing_image", "no image")
    summary.images_dropped += len(row.images) - len(good)
    return good


def _rel(path: Path, out: Path) -> str:
    """The image path as the output JSONL should reference it: relative to its folder (absolute across drives)."""
    try:
        return Path(os.path.relpath(path.resolve(), out.resolve())).as_posix()
    except ValueError:
        return str(path.resolve())


def import_data(
    fmt: str,
    path: str | Path,
    out: str | Path,
    val_frac: float = 0.1,
    test_frac: float = 0.1,
    seed: int = 0,
    kg: KnowledgeGraph | None = None,
    max_pixels: int = MAX_PIXELS,
) -> dict:
    """Convert a data set into ``out``/{train,val,test}.jsonl; return the summary (see ``summary_table``)."""
    if fmt not in READERS:
        raise DataError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
        raise DataError(
            f"--val-frac and --test-frac must be in [0, 1) with a sum below 1 (got {val_frac}, {test_frac})"
        )
    if max_pixels < 1:
        raise DataError(f"--max-pixels must be >= 1 (got {max_pixels})")
    if kg is None:
        from knowledge_graph.io import load_builtin

        kg = load_builtin("derm")
    path, out = Path(path), Path(out)
    summary = Summary()
    kept: list[tuple[Row, str, list[Path]]] = []
    groups: dict[str, tuple[str, str | None]] = {}
    seen_images: set[Path] = set()
    for where, row in READERS[fmt](path):
        try:
            if isinstance(row, RowError):
                raise row
            cid = condition_of(kg, row.label, row.prefix, groups=fmt == "dermnet")
            if cid is None:
                summary.unmapped[row.label] += 1
                raise RowError("unknown_label", f"label {row.label!r} is not a condition of KG {kg.name!r}")
            if row.group in groups and groups[row.group][0] != cid:
                raise RowError(
                    "bad_field", f"{row.group} already has label {kg.label(groups[row.group][0])!r}"
                )
            if any(p.resolve() in seen_images for p in row.images):
                raise RowError("duplicate", f"image listed twice: {row.images[0].name}")
            images = _usable_images(row, max_pixels, summary)
        except RowError as e:
            summary.skip(where, e)
            continue
        seen_images.update(p.resolve() for p in row.images)
        groups.setdefault(row.group, (cid, row.declared))
        kept.append((row, cid, images))
    if not kept:
        first = next((ex[0] for ex in summary.examples.values()), "no rows")
        raise DataError(f"{path}: no usable {fmt} rows (first problem: {first})")
    declared = {d for _, d in groups.values()}
    fracs = {"val": 0.0 if "val" in declared else val_frac, "test": 0.0 if "test" in declared else test_frac}
    split_of = assign_splits(groups, fracs["val"], fracs["test"], seed)
    records: dict[str, list[dict]] = {s: [] for s in SPLITS}
    labels: Counter = Counter()
    label_set = sorted({kg.label(cid) for _, cid, _ in kept})  # the run's labels, listed in every prompt
    for row, cid, images in kept:
        meta = {"source": fmt, "condition_id": cid, **row.meta}
        if kg.type(cid) == "category":  # a DermNet class folder: naming any member condition is right
            meta["members"] = sorted(kg.members(cid))
        rec = {
            "prompt": row.prompt or build_prompt(label_set, len(images)),
            "images": [_rel(p, out) for p in images],
            "answer": kg.label(cid),
            "meta": meta,
        }
        records[split_of[row.group]].append(rec)
        labels[rec["answer"]] += 1
    with atomic_jsonl(out, list(records)) as files:  # every split renamed into place together
        for split, recs in records.items():
            for rec in recs:
                files.write(split, rec)
    summary.kept = len(kept)
    return {
        "format": fmt,
        "input": str(path),
        "out": str(out),
        "kept": summary.kept,
        "skipped": sum(summary.reasons.values()),
        "reasons": dict(sorted(summary.reasons.items())),
        "splits": {s: len(records[s]) for s in SPLITS},
        "examples": summary.examples,
        "unmapped": dict(summary.unmapped.most_common()),
        "labels": dict(labels.most_common()),
        "images_dropped": summary.images_dropped,
        "groups": len(groups),
        "files": files.paths,
        "seed": seed,
        "fractions": fracs,
        "max_pixels": max_pixels,
    }


def summary_table(s: dict) -> str:
    """The summary as a few aligned lines (the CLI's default output)."""
    lines = [
        f"{s['format']} from {s['input']} -> {s['out']}",
        f"kept {s['kept']} ({s['groups']} split units), skipped {s['skipped']}",
    ]
    lines += [f"  {split:<8}{n:>8}" for split, n in s["splits"].items()]
    lines += [f"  skipped {reason:<16}{n:>6}" for reason, n in s["reasons"].items()]
    for shown in s["examples"].values():
        lines += [f"    e.g. {e}" for e in shown]
    if s["images_dropped"]:
        lines.append(f"  {s['images_dropped']} unusable images dropped from cases that kept others")
    if s["unmapped"]:
        top = ", ".join(f"{k} ({n})" for k, n in list(s["unmapped"].items())[:15])
        more = len(s["unmapped"]) - 15
        lines.append(
            f"  unmapped labels: {top}" + (f", and {more} more (--json lists all)" if more > 0 else "")
        )
    lines.append(f"  classes: {len(s['labels'])}")
    return "\n".join(lines)
