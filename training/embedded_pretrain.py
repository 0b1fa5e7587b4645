"""A short, seeded language-model warm-up of the embedded text weights on the project's own text.

A randomly initialised model samples uniformly over its vocabulary, so no reward is ever non-zero and an RL
demo shows nothing. A few hundred CPU steps on chat transcripts (arithmetic, counting, comparisons) and the
corpus give a model that writes chat-shaped text and numbers: still tiny and without medical skill, but one whose
behaviour training can visibly move. The RL toy task (reply with a given number) is deliberately NOT in here.
"""

from __future__ import annotations

import random

import torch

PRETRAIN_STEPS = 200
BATCH = 8
SEQ = 64
LR = 3e-3


def chat_transcripts(n: int, seed: int) -> list[list[dict]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        kind = rng.randrange(4)
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        if kind == 0:
            q, ans = f"What is {a} + {b}?", str(a + b)
        elif kind == 1:
            hi, lo = max(a, b), min(a, b)
            q, ans = f"What is {hi} - {lo}?", str(hi - lo)
        elif kind == 2:
            q, ans = f"Which number is larger, {a} or {b}?", str(max(a, b))
        else:
            lo = min(a, b)
            q, ans = f"Count from {lo} to {lo + 4}.", " ".join(str(i) for i in range(lo, lo + 5))
        out.append([{"role": "user", "content": q}, {"role": "assistant", "content": ans}])
    return out


def warm_up(model, tokenizer, texts: list[str], seed: int, steps: int | None = None) -> list[float]:
    """Train all weights of `model` (in place) as a causal LM on `texts` + transcripts; returns the losses."""
    from training.tracking import progress

    steps = PRETRAIN_STEPS if steps is None else steps
    chats = [tokenizer.apply_chat_template(c, tokenize=False) for c in chat_transcripts(2000, seed)]
    stream: list[int] = []
    rng = random.Random(seed)
    docs = chats + [t for t in texts if len(t) > 3]
    rng.shuffle(docs)
    for d in docs:
        stream.extend(tokenizer(d, add_special_tokens=False).input_ids)
        stream.append(tokenizer.convert_tokens_to_ids("<|endoftext|>"))
    data = torch.tensor(stream, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0, foreach=False)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * max(0.1, 1 - s / steps))
    model.train()
    losses = []
    for _ in progress(range(steps), desc="warm up embedded model", unit="step", leave=False):
        starts = torch.randint(0, len(data) - SEQ - 1, (BATCH,), generator=g)
        batch = torch.stack([data[s : s + SEQ] for s in starts.tolist()])
        loss = model(input_ids=batch, labels=batch, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    model.eval()
    return losses


VISION_STEPS = 120
VISION_BATCH = 8
VISION_LR = 2e-3


def image_text_batch(processor, pairs: list[tuple]) -> dict:
    """(image, question, answer) triples -> a right-padded VLM batch with labels on the answer tokens only."""
    texts, prompts = [], []
    for _, question, answer in pairs:
        user = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        prompt = processor.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
        prompts.append(prompt)
        texts.append(prompt + answer + "<|im_end|>")
    enc = processor(text=texts, images=[p[0] for p in pairs], return_tensors="pt", padding=True, padding_side="right")
    plen = [len(x) for x in processor(text=prompts, images=[p[0] for p in pairs], padding=False)["input_ids"]]
    labels = enc["input_ids"].clone()
    labels[enc["attention_mask"] == 0] = -100
    for b, n in enumerate(plen):
        labels[b, :n] = -100
    return {**enc, "labels": labels}


def pretrain_vision(model, processor, pairs: list[tuple], seed: int, steps: int | None = None) -> list[float]:
    """Train the vision tower, the merger and the language model (in place) to answer each pair's question about its
    image; returns the losses. The pairs come from the caller (what the images show is not this module's concern)."""
    from training.tracking import progress

    steps = VISION_STEPS if steps is None else steps
    g = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=VISION_LR, weight_decay=0.0, foreach=False)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * max(0.05, 1 - s / steps))
    model.train()
    losses = []
    for _ in progress(range(steps), desc="pretrain embedded vision", unit="step", leave=False):
        idx = torch.randint(0, len(pairs), (VISION_BATCH,), generator=g).tolist()
        batch = image_text_batch(processor, [pairs[i] for i in idx])
        loss = model(**batch, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    model.eval()
    return losses
