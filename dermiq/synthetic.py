"""KG-driven synthetic dermatology data: lesion images whose findings come from the KG, as RL records.

Each image gets its own RNG seeded from (seed, condition, index), so a data set is identical across runs and
machines, and any one image can be regenerated alone.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from knowledge_graph.kg import KnowledgeGraph
from training.data.records import write_jsonl

from .findings import sample_findings
from .prompts import QUESTION, build_prompt
from .render import SUPPORTED, render

# Visually separable defaults: the DermIQ 8 DermNet conditions, the other HAM10000 classes and a few more.
DEFAULT_CONDITIONS = (
    "condition:melanoma",
    "condition:melanocytic_nevus",
    "condition:basal_cell_carcinoma",
    "condition:actinic_keratosis",
    "condition:seborrheic_keratosis",
    "condition:dermatofibroma",
    "condition:vascular_lesion",
    "condition:psoriasis",
    "condition:dermatitis",
    "condition:lichen_planus",
    "condition:rosacea",
    "condition:vitiligo",
    "condition:tinea_corporis",
)
PROMPT = QUESTION  # the user turn's question (the format and labels are the system turn: dermiq.prompts)


def _kg(kg: KnowledgeGraph | None) -> KnowledgeGraph:
    if kg is not None:
        return kg
    from knowledge_graph.io import load_builtin

    return load_builtin("derm")


def make_sample(
    kg: KnowledgeGraph, condition: str, seed: int, index: int, size: int = 112
) -> tuple[Image.Image, dict]:
    """One image and its ground truth (findings by type, Fitzpatrick type, per-image seed)."""
    cid = kg.require(condition, "condition")
    rng = random.Random(f"{seed}/{cid}/{index}")
    findings = sample_findings(kg, cid, rng, SUPPORTED)
    fitz = rng.randint(1, 6)
    img = render(findings, size, fitz, rng)
    return img, {"condition_id": cid, "findings": findings, "fitzpatrick": fitz, "seed": seed, "index": index}


def make_record(image_path: str, kg: KnowledgeGraph, meta: dict, labels: list[str] | None = None) -> dict:
    """The RL record (DESIGN.md), the same shape the importers write; ``labels``: the data set's label set
    (default: the labels of DEFAULT_CONDITIONS)."""
    labels = labels or [kg.label(kg.require(c, "condition")) for c in DEFAULT_CONDITIONS]
    return {
        "prompt": build_prompt(labels),
        "images": [image_path],
        "answer": kg.label(meta["condition_id"]),
        "meta": {**meta, "source": "synthetic"},
    }


def generate_dataset(
    out_dir: str | Path,
    conditions: list[str] | None = None,
    n_per_class: int = 20,
    seed: int = 0,
    size: int = 112,
    kg: KnowledgeGraph | None = None,
    progress: bool = True,
) -> list[dict]:
    """Write ``images/<condition>/<i>.png`` and ``records.jsonl`` under ``out_dir``; return the records.

    Image paths in the records are relative to ``out_dir`` (the folder holding records.jsonl).
    """
    from tqdm import tqdm

    kg = _kg(kg)
    out = Path(out_dir)
    conds = [kg.require(c, "condition") for c in (conditions or DEFAULT_CONDITIONS)]
    jobs = [(c, i) for c in conds for i in range(n_per_class)]
    labels = [kg.label(c) for c in conds]
    records = []
    for cid, i in tqdm(jobs, desc="synthetic lesions", unit="img", disable=not progress):
        img, meta = make_sample(kg, cid, seed, i, size)
        rel = f"images/{cid.split(':', 1)[1]}/{i:05d}.png"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        img.save(out / rel, optimize=False, compress_level=1)
        records.append(make_record(rel, kg, meta, labels))
    write_jsonl(out / "records.jsonl", records)
    return records


def contact_sheet(
    path: str | Path,
    conditions: list[str] | None = None,
    per_row: int = 6,
    seed: int = 0,
    size: int = 160,
    kg: KnowledgeGraph | None = None,
) -> Path:
    """A PNG grid, one row per condition (label on the left), for a person to eyeball the renderer."""
    kg = _kg(kg)
    conds = [kg.require(c, "condition") for c in (conditions or DEFAULT_CONDITIONS)]
    label_w, pad = 190, 4
    sheet = Image.new(
        "RGB", (label_w + per_row * (size + pad), len(conds) * (size + pad) + pad), (255, 255, 255)
    )
    draw = ImageDraw.Draw(sheet)
    try:
        font = ImageFont.load_default(size=15)
    except TypeError:  # Pillow < 10.1: bitmap font only
        font = ImageFont.load_default()
    for row, cid in enumerate(conds):
        y = pad + row * (size + pad)
        draw.text((8, y + size // 2 - 8), kg.label(cid), fill=(0, 0, 0), font=font)
        for col in range(per_row):
            img, _ = make_sample(kg, cid, seed, col, size)
            sheet.paste(img, (label_w + col * (size + pad), y))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
