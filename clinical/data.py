"""Clinical QA data sets -> the common RL records (README "Data formats"), split into train/val/test.

Formats: ``medqa`` (USMLE JSONL), ``medmcqa`` (JSONL, ``cop`` 1-4; rows without it are evaluation-only), ``pubmedqa``
(``pqa_labeled`` rows or the original ``ori_pqal.json`` keyed by PMID; options yes/no/maybe, the abstract's contexts are
part of the case), ``medxpertqa`` (Text: options lettered inside the question, ``label``) and ``vignettes`` (the
clinical KG's vignette bank, `clinical.synthetic`: the embedded default, or a JSONL written by ``medrl clinical synth``).

Each record: ``{"prompt": build_prompt(...), "images": [], "answer": "C", "meta": {"options", "source", "id",
"subject", "case", ...}}``; ``meta.case`` is the case text without the options (what faithfulness checks findings
against). Rows are read one at a time and written as they come (temporary files renamed at the end), so a 180k-row
MedMCQA never sits in memory; the split of a pooled row is a seeded hash of its content, so it does not depend on
row order or on the other rows, and a question seen twice (within or across files) is kept once, in the first split
that holds it (test files are read first, so a train copy of a test question never leaks).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from training.atomic import atomic_jsonl
from training.errors import DataError

from .prompts import MULTI_NOTE, build_prompt

FORMATS = ("medqa", "medmcqa", "pubmedqa", "medxpertqa", "vignettes")
SPLITS = ("train", "val", "test")
LETTERS = "ABCDEFGHIJ"
PUBMEDQA_OPTIONS = {"A": "yes", "B": "no", "C": "maybe"}
EXAMPLES = 5  # skipped-row messages kept for the summary
_SPLIT_WORDS = {
    "train": "train",
    "training": "train",
    "dev": "val",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}
_READ_ORDER = {"test": 0, "val": 1, None: 2, "train": 2}


class RowError(Exception):
    """A row that cannot become a record: ``reason`` is the summary's bucket, the message names the field."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class Item:
    """One question, format-independent."""

    case: str
    options: dict[str, str]
    answer: str | None  # None: evaluation-only (no gold answer published)
    id: str
    subject: str | None = None
    meta: dict = field(default_factory=dict)
    note: str | None = None  # extra instruction for the user turn (MedMCQA multi-choice)


# ---------------------------------------------------------------------------------------------- fields
def _text(obj: dict, key: str, what: str = "a non-empty string") -> str:
    if obj.get(key) is None:
        raise RowError("missing_field", f"field '{key}': expected {what}, got nothing")
    v = obj[key]
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        v = str(v)
    if not isinstance(v, str) or not v.strip():
        raise RowError("bad_field", f"field '{key}': expected {what}, got {_short(v)}")
    return v.strip()


def _short(v: object) -> str:
    s = json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


def _options(raw: object, key: str) -> dict[str, str]:
    if raw is None:
        raise RowError("missing_field", f"field '{key}': expected a dict of lettered options, got nothing")
    if not isinstance(raw, dict) or len(raw) < 2:
        raise RowError(
            "bad_field", f"field '{key}': expected a dict of at least 2 lettered options, got {_short(raw)}"
        )
    out = {}
    for k in raw:
        letter = str(k).strip().upper()
        if len(letter) != 1 or letter not in LETTERS:
            raise RowError("bad_field", f"field '{key}': expected option letters A-J, got {_short(k)}")
        out[letter] = _text(raw, k, f"option {letter} as a non-empty string")
    return dict(sorted(out.items()))


def _gold(letter: str, options: dict[str, str], key: str) -> str:
    letter = letter.strip().upper()
    if letter not in options:
        raise RowError(
            "answer_not_option", f"field '{key}': expected one of {', '.join(options)}, got {_short(letter)}"
        )
    return letter


def _same(a: str, b: str) -> bool:
    return " ".join(a.lower().split()) == " ".join(b.lower().split())


# ---------------------------------------------------------------------------------------------- formats
def medqa(obj: dict, rid: str) -> Item:
    """USMLE JSONL: question, options {A..E}, answer_idx, answer (must be that option's text), meta_info."""
    question = _text(obj, "question")
    options = _options(obj.get("options"), "options")
    answer = _gold(_text(obj, "answer_idx", "an option letter"), options, "answer_idx")
    if isinstance(obj.get("answer"), str) and not _same(obj["answer"], options[answer]):
        raise RowError(
            "answer_not_option",
            f"field 'answer': expected the text of option {answer} ({_short(options[answer])}), "
            f"got {_short(obj['answer'])}",
        )
    subject = obj.get("meta_info") if isinstance(obj.get("meta_info"), str) else None
    return Item(question, options, answer, str(obj.get("id") or rid), subject)


def medmcqa(obj: dict, rid: str) -> Item:
    """MedMCQA: question, opa..opd, cop 1-4 (absent, null or -1 in the test split: evaluation-only)."""
    question = _text(obj, "question")
    options = {
        letter: _text(obj, key, f"option {letter} as a non-empty string")
        for letter, key in zip("ABCD", ("opa", "opb", "opc", "opd"), strict=True)
    }
    cop = obj.get("cop")
    if cop is None or cop == -1 or cop == "":
        answer = None
    else:
        try:
            n = int(cop)
        except (TypeError, ValueError):
            raise RowError("bad_field", f"field 'cop': expected 1-4, got {_short(cop)}") from None
        if not 1 <= n <= 4:
            raise RowError("answer_not_option", f"field 'cop': expected 1-4, got {_short(cop)}")
        answer = "ABCD"[n - 1]
    meta = {k: obj[k] for k in ("topic_name", "choice_type") if isinstance(obj.get(k), str)}
    if isinstance(obj.get("exp"), str) and obj["exp"].strip():
        meta["explanation"] = obj["exp"].strip()
    subject = obj.get("subject_name") if isinstance(obj.get("subject_name"), str) else None
    note = MULTI_NOTE if obj.get("choice_type") == "multi" else None
    return Item(question, options, answer, str(obj.get("id") or rid), subject, meta, note)


def pubmedqa(obj: dict, rid: str) -> Item:
    """PubMedQA: ``pqa_labeled`` rows (pubid, question, context{contexts, labels, meshes}, long_answer, final_decision)
    or ``ori_pqal.json`` entries (QUESTION, CONTEXTS, LABELS, MESHES, LONG_ANSWER, final_decision)."""
    if "QUESTION" in obj or "CONTEXTS" in obj:
        question, ctx, labels, meshes = (
            _text(obj, "QUESTION"),
            obj.get("CONTEXTS"),
            obj.get("LABELS"),
            obj.get("MESHES"),
        )
        ctx_key, long_key = "CONTEXTS", "LONG_ANSWER"
    else:
        question = _text(obj, "question")
        context = obj.get("context")
        if context is None:
            raise RowError(
                "missing_field", "field 'context': expected {contexts, labels, meshes}, got nothing"
            )
        if not isinstance(context, dict):
            raise RowError(
                "bad_field", f"field 'context': expected {{contexts, labels, meshes}}, got {_short(context)}"
            )
        ctx, labels, meshes = context.get("contexts"), context.get("labels"), context.get("meshes")
        ctx_key, long_key = "context.contexts", "long_answer"
    if ctx is None:
        raise RowError("missing_field", f"field '{ctx_key}': expected a list of passages, got nothing")
    if not isinstance(ctx, list) or not ctx or not all(isinstance(c, str) and c.strip() for c in ctx):
        raise RowError(
            "bad_field", f"field '{ctx_key}': expected a non-empty list of passages, got {_short(ctx)}"
        )
    labels = labels if isinstance(labels, list) and len(labels) == len(ctx) else [None] * len(ctx)
    passages = "\n".join(
        f"{lab.strip().upper()}: {c.strip()}" if isinstance(lab, str) and lab.strip() else c.strip()
        for lab, c in zip(labels, ctx, strict=True)
    )
    decision = _text(obj, "final_decision", "yes, no or maybe").lower()
    answer = next((k for k, v in PUBMEDQA_OPTIONS.items() if v == decision), None)
    if answer is None:
        raise RowError(
            "answer_not_option", f"field 'final_decision': expected yes, no or maybe, got {_short(decision)}"
        )
    meta = {"mesh": [m for m in meshes if isinstance(m, str)]} if isinstance(meshes, list) else {}
    if isinstance(obj.get(long_key), str) and obj[long_key].strip():
        meta["explanation"] = obj[long_key].strip()
    case = f"Abstract:\n{passages}\n\nQuestion: {question}"
    return Item(case, dict(PUBMEDQA_OPTIONS), answer, str(obj.get("pubid") or rid), None, meta)


_CHOICES = re.compile(r"\s*Answer Choices:\s*", re.I)
_LETTERED = re.compile(r"\(([A-J])\)\s*")


def split_lettered(text: str) -> tuple[str, dict[str, str]]:
    """'stem Answer Choices: (A) x (B) y' -> (stem, {A: x, B: y}); letters must run A, B, C... in order."""
    m = _CHOICES.search(text)
    stem, tail = (text[: m.start()], text[m.end() :]) if m else (text, text)
    marks = list(_LETTERED.finditer(tail))
    if not m:  # no header: the options are the last run of (A), (B), ... in the text
        starts = [i for i, x in enumerate(marks) if x.group(1) == "A"]
        marks = marks[starts[-1] :] if starts else []
        if marks:
            stem = tail[: marks[0].start()]
    options = {}
    for i, x in enumerate(marks):
        if x.group(1) != LETTERS[i]:
            break
        end = marks[i + 1].start() if i + 1 < len(marks) else len(tail)
        options[x.group(1)] = tail[x.end() : end].strip()
    return stem.strip(), options


def medxpertqa(obj: dict, rid: str) -> Item:
    """MedXpertQA Text: question with '(A) ...' options in the text (an ``options`` dict wins when present), label."""
    stem, parsed = split_lettered(_text(obj, "question"))
    options = _options(obj["options"], "options") if obj.get("options") is not None else parsed
    if len(options) < 2 or not all(options.values()):
        raise RowError(
            "bad_field", "field 'question': expected lettered options '(A) ... (B) ...' in the text"
        )
    if not stem:
        raise RowError("bad_field", "field 'question': expected a question before the options")
    answer = _gold(_text(obj, "label", "an option letter"), options, "label")
    meta = {k: obj[k] for k in ("medical_task", "question_type") if isinstance(obj.get(k), str)}
    subject = obj.get("body_system") if isinstance(obj.get("body_system"), str) else None
    return Item(stem, options, answer, str(obj.get("id") or rid), subject, meta)


def vignette(obj: dict, rid: str, kg=None) -> Item:
    """A `clinical.synthetic` vignette (MedQA layout plus condition_id, findings, finding_ids)."""
    item = medqa(obj, rid)
    item.meta = {
        "answer_text": item.options[item.answer],
        **{k: obj[k] for k in ("condition_id", "findings", "finding_ids", "seed") if k in obj},
    }
    item.subject = None
    cid = obj.get("condition_id")
    if kg is not None and isinstance(cid, str) and cid in kg:
        cats = kg.categories(cid)
        item.subject = kg.label(cats[0]) if cats else None
    item.id = str(obj.get("id") or rid)
    return item


CONVERTERS = {"medqa": medqa, "medmcqa": medmcqa, "pubmedqa": pubmedqa, "medxpertqa": medxpertqa}


# ---------------------------------------------------------------------------------------------- reading
def declared_split(path: Path) -> str | None:
    """'train.jsonl' -> train, 'dev.json' / 'medqa_val.jsonl' -> val, 'test_set.json' -> test, else None."""
    words = re.split(r"[^a-z0-9]+", path.stem.lower())
    found = {_SPLIT_WORDS[w] for w in words if w in _SPLIT_WORDS}
    return found.pop() if len(found) == 1 else None


def input_files(path: Path) -> list[Path]:
    """A file, or the .json/.jsonl files of a folder; test files first, then val, then the rest (see module doc)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"{path}: no such file or folder")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in (".json", ".jsonl"))
    if not files:
        raise DataError(f"{path}: no .json or .jsonl files in this folder")
    return sorted(files, key=lambda p: _READ_ORDER[declared_split(p)])


def _keyed(obj: object) -> bool:
    """The ori_pqal.json layout: {pmid: {...}, ...}, no row-level keys at the top."""
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(v, dict) for v in obj.values())
        and not {"question", "QUESTION", "pubid", "id"} & obj.keys()
    )


def iter_rows(path: Path) -> Iterator[tuple[str, dict | RowError]]:
    """(where, row object or the RowError that stops it), one at a time; JSONL unless the file is one JSON document."""
    with open(path, "rb") as f:
        first = f.readline()
    head = first.lstrip()
    document = False
    if path.suffix.lower() == ".json" and head[:1] in (b"[", b"{"):
        try:
            document = head[:1] == b"[" or _keyed(json.loads(first))
        except (ValueError, UnicodeDecodeError):
            document = True  # a pretty-printed document: its first line is not a whole object
    yield from (_document_rows(path) if document else _jsonl_rows(path))


def _jsonl_rows(path: Path) -> Iterator[tuple[str, dict | RowError]]:
    with open(path, "rb") as f:
        for row, raw in enumerate(f, start=1):
            where = f"{path}:{row}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield (
                    where,
                    RowError("not_utf8", f"not UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})"),
                )
                continue
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                yield where, RowError("bad_json", f"not valid JSON ({getattr(e, 'msg', e)})")
                continue
            yield where, obj if isinstance(obj, dict) else RowError("bad_field", "expected a JSON object")


def _document_rows(path: Path) -> Iterator[tuple[str, dict | RowError]]:
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path}: not UTF-8 (byte at offset {e.start}); a JSON document must be UTF-8"
        ) from None
    except ValueError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if isinstance(doc, list):
        pairs = ((f"{path}:{i}", obj) for i, obj in enumerate(doc, start=1))
    elif _keyed(doc):
        pairs = ((f"{path}:{key}", {**obj, "pubid": obj.get("pubid", key)}) for key, obj in doc.items())
    else:
        pairs = iter([(f"{path}:1", doc)])
    for where, obj in pairs:
        yield where, obj if isinstance(obj, dict) else RowError("bad_field", "expected a JSON object")


# ---------------------------------------------------------------------------------------------- records
def record(item: Item, source: str) -> dict:
    """The RL record of one question."""
    meta = {
        "options": item.options,
        "source": source,
        "id": item.id,
        "subject": item.subject,
        "case": item.case,
        **item.meta,
    }
    if item.answer is None:
        meta["eval_only"] = True
    return {
        "prompt": build_prompt(item.case, item.options, item.note),
        "images": [],
        "answer": item.answer,
        "meta": meta,
    }


def content_key(item: Item) -> str:
    """Case and options, case- and space-insensitive: the identity of a question for dedup and splitting."""
    text = item.case + "\x00" + "\x00".join(f"{k}:{v}" for k, v in sorted(item.options.items()))
    return hashlib.blake2b(" ".join(text.lower().split()).encode(), digest_size=16).hexdigest()


def assign_split(key: str, declared: str | None, fracs: dict[str, float], seed: int) -> str:
    """A declared split stands; a pooled row goes to val/test by a seeded hash of its content, else train."""
    if declared in ("val", "test"):
        return declared
    u = int(hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).hexdigest(), 16) / 2**64
    if u < fracs["val"]:
        return "val"
    if u < fracs["val"] + fracs["test"]:
        return "test"
    return "train"


def _items(fmt: str, path: str, n: int, seed: int) -> Iterator[tuple[str, str | None, Item | RowError]]:
    """(where, declared split, item or error) for every input row."""
    if fmt == "vignettes":
        from knowledge_graph.io import load_builtin

        kg = load_builtin("clinical")
        if path in ("embedded", ""):
            from .synthetic import generate_vignettes

            for i, v in enumerate(generate_vignettes(n, seed, kg)):
                yield f"embedded:{i}", None, vignette(v, f"vignette-{seed}-{i}", kg)
            return
        convert = lambda obj, rid: vignette(obj, rid, kg)  # noqa: E731
    else:
        convert = CONVERTERS[fmt]
    for file in input_files(Path(path)):
        declared = declared_split(file)
        for where, obj in iter_rows(file):
            if isinstance(obj, RowError):
                yield where, declared, obj
                continue
            try:
                yield where, declared, convert(obj, f"{file.stem}:{where.rsplit(':', 1)[1]}")
            except RowError as e:
                yield where, declared, e


def import_data(
    fmt: str,
    path: str | Path,
    out: str | Path,
    val_frac: float = 0.1,
    test_frac: float = 0.1,
    seed: int = 0,
    n: int = 500,
) -> dict:
    """Convert ``path`` (a file or folder; 'embedded' for the vignette bank) into ``out``/{train,val,test}.jsonl.

    Returns the summary: records per split, evaluation-only rows, skipped rows by reason with the first examples.
    A split some input file declares (by its name) takes no pooled rows: the fractions fill only undeclared ones.
    """
    if fmt not in FORMATS:
        raise DataError(f"unknown format '{fmt}' (expected one of {', '.join(FORMATS)})")
    if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
        raise DataError(
            f"--val-frac and --test-frac must be in [0, 1) with a sum below 1 (got {val_frac}, {test_frac})"
        )
    if fmt == "vignettes" and n < 1:
        raise DataError(f"--n must be >= 1 (got {n})")
    path = str(path)
    files = [] if fmt == "vignettes" and path in ("embedded", "") else input_files(Path(path))
    declared = {declared_split(f) for f in files}
    fracs = {"val": 0.0 if "val" in declared else val_frac, "test": 0.0 if "test" in declared else test_frac}
    counts, skipped, examples, seen = Counter(), Counter(), [], set()
    eval_only = 0
    with atomic_jsonl(out, SPLITS) as writer:  # the three splits renamed into place together, or none
        for where, split, item in _items(fmt, path, n, seed):
            if isinstance(item, RowError):
                skipped[item.reason] += 1
                if len(examples) < EXAMPLES:
                    examples.append(f"{where}: {item}")
                continue
            key = content_key(item)
            if key in seen:
                skipped["duplicate"] += 1
                if len(examples) < EXAMPLES:
                    examples.append(f"{where}: duplicate of an earlier question (id {item.id})")
                continue
            seen.add(key)
            target = "test" if item.answer is None else assign_split(key, split, fracs, seed)
            eval_only += item.answer is None
            counts[target] += 1
            writer.write(target, record(item, fmt))
        if not counts:
            first = f" (first problem: {examples[0]})" if examples else ""
            raise DataError(f"{path}: no usable {fmt} rows{first}")
    return {
        "format": fmt,
        "input": path,
        "inputs": [str(f) for f in files],
        "out": str(out),
        "splits": {s: counts[s] for s in SPLITS},
        "eval_only": eval_only,
        "skipped": dict(sorted(skipped.items())),
        "skipped_total": sum(skipped.values()),
        "examples": examples,
        "files": writer.paths,
        "seed": seed,
        "fractions": {"val": fracs["val"], "test": fracs["test"]},
    }


def summary_table(s: dict) -> str:
    """The summary as a few aligned lines (the CLI's default output)."""
    lines = [f"{s['format']} from {s['input']} -> {s['out']}", f"{'split':<8}{'records':>9}"]
    for split in SPLITS:
        extra = (
            f"  ({s['eval_only']} evaluation-only, no answer)" if split == "test" and s["eval_only"] else ""
        )
        lines.append(f"{split:<8}{s['splits'][split]:>9}{extra}")
    lines.append(f"{'skipped':<8}{s['skipped_total']:>9}")
    lines += [f"  {reason:<17}{n:>6}" for reason, n in s["skipped"].items()]
    lines += [f"  e.g. {e}" for e in s["examples"]]
    return "\n".join(lines)
