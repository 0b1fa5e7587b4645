"""Published model shapes known without a download: the Qwen2.5 3B configs' sizes, applied to the embedded models'
configs (their special-token ids kept), so a 3B shape can be built with random weights (`medrl bench gpu`) or
planned (`medrl plan`) on a machine that has never reached the model hub."""

from __future__ import annotations

# The published Qwen2.5 3B configs' sizes (config.json of Qwen/Qwen2.5-3B-Instruct, Qwen/Qwen2.5-VL-3B-Instruct).
TEXT_3B = {
    "hidden_size": 2048,
    "intermediate_size": 11008,
    "num_hidden_layers": 36,
    "num_attention_heads": 16,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "max_position_embeddings": 32768,
    "tie_word_embeddings": True,
}
VISION_3B = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "out_hidden_size": 2048,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "window_size": 112,
}
MROPE_3B = [16, 24, 24]
# hub id -> the embedded kind whose config the published sizes are applied to
KNOWN = {"Qwen/Qwen2.5-3B-Instruct": "qwen2", "Qwen/Qwen2.5-VL-3B-Instruct": "qwen25vl"}


def resize_config(config, kind: str) -> None:
    """An embedded model's config (its special-token ids kept) at the published 3B sizes, in place."""
    text = config.text_config if kind == "qwen25vl" else config
    for k, v in TEXT_3B.items():
        setattr(text, k, v)
    text.layer_types = ["full_attention"] * TEXT_3B["num_hidden_layers"]
    text.max_window_layers = TEXT_3B["num_hidden_layers"]
    if kind == "qwen25vl":
        config.tie_word_embeddings = True
        text.rope_parameters = {**text.rope_parameters, "mrope_section": MROPE_3B}
        for k, v in VISION_3B.items():
            setattr(config.vision_config, k, v)


def known_config(name: str):
    """The config of a model named in `KNOWN` (its published sizes on the embedded config), else None."""
    kind = KNOWN.get(name)
    if kind is None:
        return None
    from transformers import AutoConfig

    from training.models.embedded import ensure_embedded

    config = AutoConfig.from_pretrained(ensure_embedded(kind))
    resize_config(config, kind)
    return config
