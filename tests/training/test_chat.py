from training.config import ModelConfig
from training.data.records import read_jsonl
from training.models.chat import IGNORE, encode_conversations
from training.models.loading import load_policy


def labelled_text(policy, enc, row=0):
    ids = enc["input_ids"][row]
    labels = enc["labels"][row]
    return policy.tokenizer.decode(ids[labels != IGNORE])


def test_labels_cover_assistant_turns_only():
    policy = load_policy(ModelConfig(name="embedded:qwen2"))
    rec = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Fever and cough?"},
            {"role": "assistant", "content": "Pneumonia."},
            {"role": "user", "content": "Treatment?"},
            {"role": "assistant", "content": "Amoxicillin."},
        ]
    }
    enc = encode_conversations(policy, [rec, {"messages": rec["messages"][:3]}], max_length=512)
    assert labelled_text(policy, enc, 0) == "Pneumonia.<|im_end|>Amoxicillin.<|im_end|>"
    assert labelled_text(policy, enc, 1) == "Pneumonia.<|im_end|>"
    assert (enc["labels"][1][enc["attention_mask"][1] == 0] == IGNORE).all()  # padding never labelled


def test_vlm_labels_skip_image_tokens(vlm_sft_file):
    policy = load_policy(ModelConfig(name="embedded:qwen25vl"))
    recs = read_jsonl(vlm_sft_file, "sft").records[:2]
    enc = encode_conversations(policy, recs, max_length=512)
    assert enc["pixel_values"].shape[0] == 2 * 64 and enc["image_grid_thw"].shape == (2, 3)
    image_id = policy.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert ((enc["input_ids"] == image_id) & (enc["labels"] != IGNORE)).sum() == 0
    assert labelled_text(policy, enc, 1) == "A dark brown macule, case 1.<|im_end|>"


def test_a_tokenizer_without_a_chat_template_is_a_clear_error(tmp_path):
    import pytest
    from transformers import AutoTokenizer

    from training.errors import ConfigError
    from training.models.chat import render
    from training.models.embedded import ensure_embedded

    tok = AutoTokenizer.from_pretrained(ensure_embedded("qwen2"))
    tok.chat_template = None
    with pytest.raises(ConfigError, match="has no chat template"):
        render(tok, [{"role": "user", "content": "hi"}])
