"""The embedded default: tiny Qwen2.5-VL and Qwen2 models built from configs, cached as Hugging Face folders.

No hub is reachable here, so the project builds its own checkpoints of the real architectures (vision tower,
merger, mRoPE for the VLM) with a byte-level BPE tokenizer trained locally. They are written once to a cache
folder with `save_pretrained` and every later load takes the ordinary `from_pretrained` path, exactly as a hub
id or a local checkpoint would. Weights are random (seeded): the embedded default shows that the machinery
works end to end, not medical skill.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from training.embedded_pretrain import align_vision, chat_transcripts, copy_warm_up, pretrain_vision, warm_up

EMBEDDED_PREFIX = "embedded:"
KINDS = ("qwen2", "qwen25vl")
BUILDER_VERSION = 3  # bump when a change below (or in embedded_pretrain.py) alters the built files
# Where the VLM's image-text pretraining pairs come from: a module with `image_text_pairs(n, seed)` -> [(PIL image,
# question, answer)] for n images (an image object may recur in several pairs; the pairs are trained on in the order
# given) and `fingerprint()` (what the pairs depend on, for the cache key). This package only trains on
# them; what the images show is the hook's business (the project's own synthetic lesions, described by their visible
# findings, so the tiny VLM arrives able to say what it sees, as a real pretrained VLM does). Without the module the
# vision tower stays random.
IMAGE_TEXT_HOOK = "dermiq.pretrain"
IMAGE_TEXT_IMAGES = 1024  # images asked for (the hook returns one or more question-answer pairs per image)
SEED = 1234
VOCAB_SIZE = 2048  # BPE merges + bytes; the Qwen special tokens are added after

# The Qwen2.5 special tokens, in the hub tokenizer's order.
SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
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


def _domain_text_files() -> list[Path]:
    """The curated KG files: read as plain text (no import), so the tokenizer knows the domain's words."""
    root = Path(__file__).resolve().parent.parent / "knowledge_graph" / "data"
    return sorted(root.glob("*.json")) if root.is_dir() else []


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
    """The tokenizer's (and warm-up's) text: generic chat text, simple Q/A and every string of the curated KGs."""
    texts = list(BASE_CORPUS)
    texts.extend(m["content"] for chat in chat_transcripts(400, SEED) for m in chat)
    for path in _domain_text_files():
        try:
            texts.extend(s.replace("_", " ") for s in _strings(json.loads(path.read_text())))
        except (OSError, ValueError):
            continue  # a KG file being edited is not the tokenizer's problem; the hash tracks content
    return texts


def _image_text_hook():
    """The pretraining pairs' module, or None when it is not installed."""
    import importlib

    try:
        return importlib.import_module(IMAGE_TEXT_HOOK)
    except ImportError:
        return None


def _fingerprint(kind: str, texts: Iterable[str]) -> str:
    h = hashlib.sha256()
    from training import embedded_pretrain as wp

    payload = {"v": BUILDER_VERSION, "warmup": [wp.PRETRAIN_STEPS, wp.BATCH, wp.SEQ, wp.LR],
               "copy": [wp.COPY_STEPS, wp.COPY_BATCH, wp.COPY_LR, wp.COPY_ITEMS], "kind": kind, "text": TEXT_CONFIG, "vision": VISION_CONFIG,
               "mrope": MROPE_SECTION, "vocab": VOCAB_SIZE, "seed": SEED, "template": CHAT_TEMPLATE}
    if kind == "qwen25vl":
        hook = _image_text_hook()
        payload["vision_pretrain"] = [IMAGE_TEXT_HOOK, hook.fingerprint() if hook else None, IMAGE_TEXT_IMAGES,
                                      wp.ALIGN_STEPS, wp.ALIGN_BATCH, wp.ALIGN_LR, wp.ALIGN_HEAD_LR,
                                      wp.VISION_STEPS, wp.VISION_BATCH, wp.VISION_LR]
    h.update(json.dumps(payload, sort_keys=True).encode())
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    return h.hexdigest()[:12]


def build_tokenizer(texts: list[str]):
    """Byte-level BPE with Qwen2's pre-tokenizer, wrapped as a `Qwen2Tokenizer` with the Qwen special tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(texts, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return Qwen2Tokenizer(
        vocab=model["vocab"], merges=merges,
        unk_token=None, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        extra_special_tokens=SPECIAL_TOKENS[1:], chat_template=CHAT_TEMPLATE,
        model_max_length=TEXT_CONFIG["max_position_embeddings"], errors="replace",
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

    cfg = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "dtype": "float32",
           **_text_model_config(tokenizer), "max_window_layers": TEXT_CONFIG["num_hidden_layers"]}
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


def _build_qwen25vl(out: Path, tokenizer, texts: list[str]) -> None:
    """The VLM's language model starts from the warmed-up text model (same sizes); the vision tower starts random and,
    with the image-text hook installed, is aligned to the hook's answers, then the LM is trained to read it."""
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
        "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl", "dtype": "float32",
        **_text_model_config(tokenizer), "max_window_layers": TEXT_CONFIG["num_hidden_layers"],
        "vision_start_token_id": ids["<|vision_start|>"], "vision_end_token_id": ids["<|vision_end|>"],
        "vision_token_id": ids["<|vision_pad|>"], "image_token_id": ids["<|image_pad|>"],
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
    lm = {k[len("model."):]: v for k, v in text.items() if k.startswith("model.")}
    model.model.language_model.load_state_dict(lm, strict=True)
    model.tie_weights()
    # Small images keep the CPU path fast: 56x56 .. 224x224 pixels -> 4 .. 64 visual tokens.
    pixels = {"shortest_edge": 56 * 56, "longest_edge": 224 * 224}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=pixels, patch_size=14, merge_size=2, temporal_patch_size=2),
        video_processor=Qwen2VLVideoProcessor(size=pixels, patch_size=14, merge_size=2, temporal_patch_size=2),
        tokenizer=tokenizer, chat_template=CHAT_TEMPLATE,
    )
    hook = _image_text_hook()
    if hook is not None:
        pairs = hook.image_text_pairs(IMAGE_TEXT_IMAGES, SEED)
        align = align_vision(model, processor, pairs, SEED)
        losses = pretrain_vision(model, processor, pairs, SEED)
        (out / "vision_pretrain_losses.json").write_text(json.dumps({
            "hook": IMAGE_TEXT_HOOK, "align": {"first": align[:5], "last": align[-5:]},
            "first": losses[:5], "last": losses[-5:]}))
    model.generation_config = _generation_config(GenerationConfig, tokenizer)
    model.save_pretrained(out)
    processor.save_pretrained(out)


def ensure_embedded(kind: str) -> Path:
    """Return the cached folder of an embedded model, building it (atomically) on first use."""
    if kind not in KINDS:
        from training.errors import ConfigError

        raise ConfigError(f"model: unknown embedded model '{EMBEDDED_PREFIX}{kind}' (expected one of "
                          f"{', '.join(EMBEDDED_PREFIX + k for k in KINDS)})")
    texts = corpus()
    target = cache_root() / f"{kind}-{_fingerprint(kind, texts)}"
    if (target / "model.safetensors").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{kind}-", dir=target.parent))
    try:
        tokenizer = build_tokenizer(texts)
        (_build_qwen2 if kind == "qwen2" else _build_qwen25vl)(tmp, tokenizer, texts)
        (tmp / "EMBEDDED.md").write_text(
            f"medrl embedded default '{kind}' (builder v{BUILDER_VERSION}, seed {SEED}): the real architecture, "
            "randomly initialised, its language model taught to copy (repeat-after-me chats) and warmed up for a few "
            "hundred CPU steps on the project's text (training/embedded_pretrain.py)" + (f", the VLM's vision tower and merger then aligned to, and its language "
                                                 f"model trained on, image-text pairs from {IMAGE_TEXT_HOOK}"
                                                 if kind == "qwen25vl" else "") +
            ". For exercising the pipeline on CPU. Not a medical model.\n")
        try:
            os.rename(tmp, target)
        except OSError:  # another process won the race: its build is identical
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def resolve_model_path(name: str) -> str:
    """`embedded:qwen2` -> its cached folder; anything else (hub id, local dir) is returned unchanged."""
    if name.startswith(EMBEDDED_PREFIX):
        return str(ensure_embedded(name[len(EMBEDDED_PREFIX):]))
    return name
