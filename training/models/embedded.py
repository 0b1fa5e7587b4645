"""The embedded default: tiny Qwen2.5-VL and Qwen2 models built from configs, cached as Hugging Face folders.

No hub is reachable here, so the project builds its own checkpoints of the real architectures (vision tower,
merger, mRoPE for the VLM) with a byte-level BPE tokenizer trained locally. They are written once to a cache
folder with `save_pretrained` and every later load takes the ordinary `from_pretrained` path, exactly as a hub
id or a local checkpoint would. Weights are random (seeded): the embedded default shows that the machinery
works end to end, not medical skill.

The built folders ship in the package (`embedded_weights/`, with a SHA-256 manifest), so a fresh machine loads them
at once instead of spending minutes building them. `python -m training.models.embedded build KIND OUT` reproduces them bit
for bit on any x86 CPU with AVX2: the build runs in a child process with the CPU kernels pinned (PyTorch's AVX2
kernels, MKL's AVX2 reproducibility branch, oneDNN off, two threads), because a build that uses whatever kernels the
CPU offers gives different weights on an AVX-512 CPU than on an AVX2 one. Its text is the code's generated chats plus
a frozen snapshot of the curated KG's strings (`kg_text.json.gz`), so editing the KG does not change the base model,
just as editing one's data does not change a hub checkpoint.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from training.models.embedded_pretrain import (
    align_vision,
    chat_transcripts,
    copy_warm_up,
    pretrain_vision,
    warm_up,
)

EMBEDDED_PREFIX = "embedded:"
KINDS = ("qwen2", "qwen25vl")
# bump when a change below (or in embedded_pretrain.py) alters the built files; then re-ship
BUILDER_VERSION = 4
SHIPPED = (
    Path(__file__).resolve().parent / "embedded_weights"
)  # the built folders, MANIFEST.json, kg_text.json.gz
KG_TEXT = SHIPPED / "kg_text.json.gz"
# The child process that builds: pinned kernels and threads make the weights the same on every AVX2 CPU (measured:
# the copy warm-up's weights after 60 steps differ between native AVX-512 and AVX2 kernels, and agree between this
# setting with and without MKL_ENABLE_INSTRUCTIONS=AVX2).
BUILD_THREADS = 2
BUILD_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2,STRICT",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OMP_NUM_THREADS": str(BUILD_THREADS),
    "MKL_NUM_THREADS": str(BUILD_THREADS),
}
# The VLM's image-text pretraining pairs come from a plug-in passed to the build (`--pairs MODULE`; the manifest
# records which one the shipped VLM used): a module with `image_text_pairs(n, seed)` -> [(PIL image, question,
# answer)] for n images (an image object may recur in several pairs; they are trained on in the order given). This
# package only trains on them; what the images show is the plug-in's business (medrl's is `dermiq.pretrain`: synthetic
# lesions described by their visible findings, so the tiny VLM arrives able to say what it sees, as a real pretrained
# VLM does). A VLM build without one is an error, never a random vision tower. A change to what it returns changes the
# VLM: the rebuild test then fails until the weights are re-shipped.
IMAGE_TEXT_IMAGES = 1024  # images asked for (the plug-in returns one or more question-answer pairs per image)
SEED = 1234
VOCAB_SIZE = 2048  # BPE merges + bytes; the Qwen special tokens are added after

# The Qwen2.5 special tokens, in the hub tokenizer's order.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Text sizes shared by both models, so the text LM is "the VLM's language model" for benchmarks.
TEXT_CONFIG = {
    "hidden_size": 256,
    "intermediate_size": 768,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "hidden_act": "silu",
    "initializer_range": 0.02,
    "tie_word_embeddings": True,
    "use_cache": True,
    "use_sliding_window": False,
    "attention_dropout": 0.0,
}

VISION_CONFIG = {
    "depth": 2,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_heads": 2,
    "in_chans": 3,
    "out_hidden_size": TEXT_CONFIG["hidden_size"],
    "patch_size": 14,
    "spatial_merge_size": 2,
    "spatial_patch_size": 14,
    "temporal_patch_size": 2,
    "window_size": 56,
    "fullatt_block_indexes": [1],
    "tokens_per_second": 2,
    "hidden_act": "silu",
}

# head_dim = 256 / 4 = 64, so the three mRoPE sections must sum to 32 (real 3B: [16, 24, 24] for 128).
MROPE_SECTION = [8, 12, 12]

# Qwen2.5's chat template (system default, multimodal content parts, generation prompt).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' or 'text' in content %}{{ content['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Generic text so the tokenizer learns chat, reasoning tags and numbers; domain text is added below.
BASE_CORPUS = [
    "You are a helpful assistant.",
    "<think> Let me reason step by step about the findings before answering. </think>",
    "<answer> The most likely diagnosis is </answer>",
    "Question: What is the most likely diagnosis? Answer with the letter of the correct option.",
    "Options: A) B) C) D) E) The answer is A. The answer is B. The answer is C. The answer is D. The answer is E.",
    "The patient is a 45-year-old woman who presents with a 3-week history of symptoms.",
    "Describe the image. The lesion is on the arm, the back, the face, the leg, the trunk, the scalp.",
    "Findings: colour, border, shape, surface, size, distribution, symptoms, history, examination, labs.",
    "This output is for research use only and is not medical advice.",
    " ".join(str(i) for i in range(0, 200)),
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 + - * / = ( ) . , ; : ? !",
]


def cache_root() -> Path:
    """Where built models live: $MEDRL_CACHE, else ~/.cache/medrl (outside the repo, shared by clones). An empty
    MEDRL_CACHE (`MEDRL_CACHE= make demo`) counts as unset, not as the current folder."""
    return Path(os.environ.get("MEDRL_CACHE") or Path.home() / ".cache" / "medrl") / "embedded"


def kg_strings(kg_dir: Path) -> list[str]:
    """Every string of the curated KG files in `kg_dir` (read as plain JSON, no import), for the tokenizer's and
    warm-up's text. Only `ship --kg-dir` reads a KG; builds read the frozen snapshot."""
    texts = []
    for path in sorted(Path(kg_dir).glob("*.json")):
        texts.extend(s.replace("_", " ") for s in _strings(json.loads(path.read_text())))
    return texts


def _strings(obj: object) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def corpus() -> list[str]:
    """The tokenizer's (and warm-up's) text: generic chat text, simple Q/A and the KG snapshot's strings."""
    texts = list(BASE_CORPUS)
    texts.extend(m["content"] for chat in chat_transcripts(400, SEED) for m in chat)
    if KG_TEXT.is_file():
        texts.extend(json.loads(gzip.decompress(KG_TEXT.read_bytes())))
    return texts


def _pairs_plugin(module: str | None):
    """The image-text pairs plug-in module (see IMAGE_TEXT_IMAGES), or a one-line error naming what is missing."""
    import importlib

    from training.errors import ConfigError

    if not module:
        raise ConfigError(
            "embedded:qwen25vl: building it needs an image-text pairs plug-in (--pairs MODULE, a module "
            "with image_text_pairs(n, seed)); medrl's is dermiq.pretrain"
        )
    try:
        plugin = importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(
            f"embedded:qwen25vl: the image-text pairs plug-in '{module}' cannot be imported ({e})"
        ) from None
    if not callable(getattr(plugin, "image_text_pairs", None)):
        raise ConfigError(f"embedded:qwen25vl: '{module}' has no image_text_pairs(n, seed)")
    return plugin


def build_tokenizer(texts: list[str]):
    """Byte-level BPE with Qwen2's pre-tokenizer, wrapped as a `Qwen2Tokenizer` with the Qwen special tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(texts, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return Qwen2Tokenizer(
        vocab=model["vocab"],
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=SPECIAL_TOKENS[1:],
        chat_template=CHAT_TEMPLATE,
        model_max_length=TEXT_CONFIG["max_position_embeddings"],
        errors="replace",
    )


def _text_model_config(tokenizer) -> dict:
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    return {
        **TEXT_CONFIG,
        "vocab_size": len(tokenizer),
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }


def _build_qwen2(out: Path, tokenizer, texts: list[str]) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    cfg = {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "dtype": "float32",
        **_text_model_config(tokenizer),
        "max_window_layers": TEXT_CONFIG["num_hidden_layers"],
    }
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    config = AutoConfig.from_pretrained(out)
    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    copy_warm_up(model, tokenizer, SEED)
    losses = warm_up(model, tokenizer, texts, SEED)
    model.generation_config = _generation_config(GenerationConfig, tokenizer)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "warmup_losses.json").write_text(json.dumps({"first": losses[:5], "last": losses[-5:]}))


def _generation_config(cls, tokenizer):
    eos = [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")]
    return cls(eos_token_id=eos, pad_token_id=eos[1], do_sample=True, temperature=1.0, top_p=1.0, top_k=0)


def _build_qwen25vl(out: Path, tokenizer, texts: list[str], pairs_module: str | None) -> None:
    """The VLM's language model starts from the warmed-up text model (same sizes); the vision tower starts random, is
    aligned to the plug-in's answers, then the LM is trained to read it."""
    import torch
    from transformers import (
        AutoConfig,
        AutoModelForImageTextToText,
        GenerationConfig,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    # The hub's flat layout: text fields at the top, the vision tower nested.
    cfg = {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        "dtype": "float32",
        **_text_model_config(tokenizer),
        "max_window_layers": TEXT_CONFIG["num_hidden_layers"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "vision_token_id": ids["<|vision_pad|>"],
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "rope_scaling": {"type": "mrope", "mrope_section": MROPE_SECTION},
        "vision_config": VISION_CONFIG,
    }
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    config = AutoConfig.from_pretrained(out)
    torch.manual_seed(SEED)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    from safetensors.torch import load_file

    text = load_file(str(ensure_embedded("qwen2") / "model.safetensors"))
    lm = {k[len("model.") :]: v for k, v in text.items() if k.startswith("model.")}
    model.model.language_model.load_state_dict(lm, strict=True)
    model.tie_weights()
    # Small images keep the CPU path fast: 56x56 .. 224x224 pixels -> 4 .. 64 visual tokens.
    pixels = {"shortest_edge": 56 * 56, "longest_edge": 224 * 224}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(
            size=pixels, patch_size=14, merge_size=2, temporal_patch_size=2
        ),
        video_processor=Qwen2VLVideoProcessor(
            size=pixels, patch_size=14, merge_size=2, temporal_patch_size=2
        ),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
    pairs = _pairs_plugin(pairs_module).image_text_pairs(IMAGE_TEXT_IMAGES, SEED)
    align = align_vision(model, processor, pairs, SEED)
    losses = pretrain_vision(model, processor, pairs, SEED)
    (out / "vision_pretrain_losses.json").write_text(
        json.dumps(
            {
                "hook": pairs_module,
                "align": {"first": align[:5], "last": align[-5:]},
                "first": losses[:5],
                "last": losses[-5:],
            }
        )
    )
    model.generation_config = _generation_config(GenerationConfig, tokenizer)
    model.save_pretrained(out)
    processor.save_pretrained(out)


def build(kind: str, out: Path, pairs: str | None = None) -> None:
    """Build one embedded model into the empty folder `out` (`pairs`: the VLM's image-text plug-in module). Call it in
    the pinned child (`_build_in_child`) for the shipped weights' bit-for-bit reproduction; in any other process it
    works but gives the CPU's own weights."""
    import torch

    torch.set_num_threads(BUILD_THREADS)
    torch.backends.mkldnn.enabled = False
    texts = corpus()
    tokenizer = build_tokenizer(texts)
    if kind == "qwen2":
        _build_qwen2(out, tokenizer, texts)
    else:
        _build_qwen25vl(out, tokenizer, texts, pairs)
    (out / "EMBEDDED.md").write_text(
        f"medrl embedded default '{kind}' (builder v{BUILDER_VERSION}, seed {SEED}): the real architecture, "
        "randomly initialised, its language model taught to copy (repeat-after-me chats) and warmed up for a few "
        "hundred CPU steps on the project's text (training/models/embedded_pretrain.py)"
        + (
            f", the VLM's vision tower and merger then aligned to, and its language model trained on, image-text pairs "
            f"from {pairs}"
            if kind == "qwen25vl"
            else ""
        )
        + ". For exercising the pipeline on CPU. Not a medical model.\n"
    )


def _build_in_child(kind: str, out: Path, pairs: str | None = None) -> None:
    """Run `build` in a fresh interpreter with the pinned kernels (they are read when torch starts, so the current
    process cannot switch); its progress bars reach this process's stderr."""
    if kind == "qwen25vl":
        _pairs_plugin(pairs)  # a missing plug-in stops here, in one line, not in the child
    from training.run.threads import without_medrl_policy

    env = {
        **without_medrl_policy(dict(os.environ)),
        **BUILD_ENV,
    }  # a one-off job: OpenMP's default spin is fastest
    cmd = [sys.executable, "-m", "training.models.embedded", "build", kind, str(out)] + (
        ["--pairs", pairs] if pairs else []
    )
    subprocess.run(cmd, env=env, check=True)


def file_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every file in a built folder, by name: what the manifest records and the rebuild test compares."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(folder).iterdir())
        if p.is_file()
    }


def manifest() -> dict:
    path = SHIPPED / "MANIFEST.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def shipped(kind: str) -> Path | None:
    """The shipped folder of `kind` when it is there and of this builder version, else None."""
    folder = SHIPPED / kind
    entry = manifest().get(kind)
    if entry and entry.get("version") == BUILDER_VERSION and (folder / "model.safetensors").is_file():
        return folder
    return None


def ensure_embedded(kind: str) -> Path:
    """The folder of an embedded model: the shipped one, else the cached one, else built (atomically, in the pinned
    child) into the cache with the plug-in the manifest names. The VLM's build reads the text model, so building it
    builds that first when needed."""
    if kind not in KINDS:
        from training.errors import ConfigError

        raise ConfigError(
            f"model: unknown embedded model '{EMBEDDED_PREFIX}{kind}' (expected one of "
            f"{', '.join(EMBEDDED_PREFIX + k for k in KINDS)})"
        )
    folder = shipped(kind)
    if folder is not None:
        return folder
    target = cache_root() / f"{kind}-v{BUILDER_VERSION}"
    if (target / "model.safetensors").is_file():
        return target
    if kind == "qwen25vl":
        ensure_embedded("qwen2")  # built here, not inside the child, so two children never race for it
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{kind}-", dir=target.parent))
    try:
        _build_in_child(kind, tmp, manifest().get(kind, {}).get("pairs"))
        try:
            os.rename(tmp, target)
        except OSError:  # another process won the race: its build is identical
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def ship(pairs: str, kg_dir: Path | None = None) -> dict:
    """Rebuild both models in the pinned child into `embedded_weights/` and write the manifest (maintainers, after
    changing the builder: bump BUILDER_VERSION first). `pairs` is the VLM's image-text plug-in; `kg_dir` refreshes the
    frozen KG text snapshot from a KG folder (e.g. knowledge_graph/data) before building."""
    SHIPPED.mkdir(parents=True, exist_ok=True)
    if kg_dir is not None:
        KG_TEXT.write_bytes(gzip.compress(json.dumps(kg_strings(kg_dir)).encode(), mtime=0))
    entries = {}
    for kind in KINDS:
        folder = SHIPPED / kind
        shutil.rmtree(folder, ignore_errors=True)
        (SHIPPED / "MANIFEST.json").write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
        folder.mkdir()
        _build_in_child(kind, folder, pairs if kind == "qwen25vl" else None)
        entries[kind] = {"version": BUILDER_VERSION, "files": file_hashes(folder)}
        if kind == "qwen25vl":
            entries[kind]["pairs"] = pairs
    (SHIPPED / "MANIFEST.json").write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
    return entries


def resolve_model_path(name: str) -> str:
    """`embedded:qwen2` -> its cached folder; anything else (hub id, local dir) is returned unchanged."""
    if name.startswith(EMBEDDED_PREFIX):
        return str(ensure_embedded(name[len(EMBEDDED_PREFIX) :]))
    return name


def main(argv: list[str] | None = None) -> int:
    """`python -m training.models.embedded build KIND OUT [--pairs MODULE]` (what the pinned child runs) and
    `... ship --pairs MODULE [--kg-dir DIR]`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m training.models.embedded")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser(
        "build", help="build one model into an empty folder (run with BUILD_ENV for the shipped bits)"
    )
    p.add_argument("kind", choices=KINDS)
    p.add_argument("out", type=Path)
    p.add_argument("--pairs", help="the VLM's image-text pairs plug-in module (medrl's: dermiq.pretrain)")
    p = sub.add_parser("ship", help="rebuild the shipped folders and their manifest")
    p.add_argument(
        "--pairs", required=True, help="the VLM's image-text pairs plug-in module (medrl's: dermiq.pretrain)"
    )
    p.add_argument("--kg-dir", type=Path, help="refresh the frozen KG text snapshot from this folder first")
    args = parser.parse_args(argv)
    if args.cmd == "build":
        args.out.mkdir(parents=True, exist_ok=True)
        build(args.kind, args.out, args.pairs)
    else:
        print(json.dumps(ship(args.pairs, args.kg_dir), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
