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
LR = 1e-3  # 3e-3 erased the copy skill the phase before it grows
# repeat-after-me batches from random init, before the prose warm-up (400 copied only nearby)
COPY_STEPS = 600
COPY_BATCH = 16
COPY_LR = 1e-3
# What the repeat chats are drawn from: option letters as the Clinical-R1 traces write them, and a few words.
COPY_ITEMS = [
    "fever",
    "cough",
    "pneumonia",
    "anaemia",
    "rash",
    "troponin",
    "syncope",
    "oedema",
    "dyspnoea",
    "pallor",
    "jaundice",
    "ascites",
    "headache",
    "nausea",
    "polyuria",
    *"ABCDE",
    *(f"{c})" for c in "ABCDE"),
]


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


def copy_batch(tokenizer, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """COPY_BATCH 'Repeat: B) fever A' -> 'B) fever A' chats, right-padded: (input_ids, labels, attention_mask).

    Copying what the context holds (induction heads) is a skill a real pretrained LM arrives with and a short prose
    warm-up never grows; without it the tiny model cannot box the letter its reasoning concluded (Clinical-R1's
    consistency: 1.6 nats, a uniform guess, at every repeated letter). After the cold start, 600 steps give 0.01-0.02
    at the check line, the summary and the box; 400 gave 0.04 at the box, which follows the summary's letter closely,
    but still 1.6 at the check and the summary, a few lines on. Clinical-R1's lead traces need the longer reach: the
    answer's line finds the leading line ~60 tokens above it in half the cold-start answers at 600 steps, 5 of 55 at
    400."""
    chats = []
    for _ in range(COPY_BATCH):
        seq = " ".join(rng.choice(COPY_ITEMS) for _ in range(rng.randint(2, 5)))
        chats.append(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": f"Repeat: {seq}"}, {"role": "assistant", "content": seq}],
                tokenize=False,
            )
        )
    b = tokenizer(chats, return_tensors="pt", padding=True, add_special_tokens=False)
    return b.input_ids, b.input_ids.masked_fill(b.attention_mask == 0, -100), b.attention_mask


def copy_warm_up(model, tokenizer, seed: int, steps: int | None = None) -> list[float]:
    """Train all weights of a randomly initialised `model` on repeat chats; the prose warm-up follows (and keeps
    a copy batch in every step, or it erases the skill)."""
    from training.run.tracking import progress

    steps = COPY_STEPS if steps is None else steps
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=COPY_LR, weight_decay=0.0, foreach=False)
    sched = _schedule(opt, steps, 1.0)
    model.train()
    losses = []
    for _ in progress(range(steps), desc="copy warm-up", unit="step", leave=False):
        ids, labels, mask = copy_batch(tokenizer, rng)
        losses.append(
            _step(
                model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False).loss,
                model.parameters(),
                opt,
                sched,
            )
        )
    model.eval()
    return losses


def _schedule(opt: torch.optim.Optimizer, steps: int, floor: float) -> torch.optim.lr_scheduler.LambdaLR:
    """20 warm-up steps, then linear decay to `floor` x the learning rate: every build-time loop's schedule."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * max(floor, 1 - s / steps)
    )


def _step(loss: torch.Tensor, params, opt: torch.optim.Optimizer, sched) -> float:
    """One clipped optimizer step of a build-time loop; returns the loss."""
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.detach())


def warm_up(model, tokenizer, texts: list[str], seed: int, steps: int | None = None) -> list[float]:
    """Train all weights of `model` (in place) as a causal LM on `texts` + transcripts; returns the losses."""
    from training.run.tracking import progress

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
    sched = _schedule(opt, steps, 0.1)
    model.train()
    losses = []
    copies = random.Random(seed + 1)
    for _ in progress(range(steps), desc="warm up embedded model", unit="step", leave=False):
        starts = torch.randint(0, len(data) - SEQ - 1, (BATCH,), generator=g)
        batch = torch.stack([data[s : s + SEQ] for s in starts.tolist()])
        ids, labels, mask = copy_batch(tokenizer, copies)
        loss = (
            model(input_ids=batch, labels=batch, use_cache=False).loss
            + model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False).loss
        )
        losses.append(_step(loss, model.parameters(), opt, sched))
    model.eval()
    return losses


# The VLM's image-text pretraining, in two stages (see align_vision and pretrain_vision for why).
ALIGN_STEPS = 300  # stage 1: the vision tower and merger alone, through a throw-away head
ALIGN_BATCH = 32
ALIGN_LR = 1e-3
ALIGN_HEAD_LR = 1e-2
VISION_STEPS = 300  # stage 2: the language model learns to read the (frozen) visual tokens
VISION_BATCH = 8
VISION_LR = 2e-3


def _images_and_bags(tokenizer, pairs: list[tuple]) -> tuple[list, torch.Tensor]:
    """The distinct images of ``pairs`` (by identity) and, for each, the multi-hot bag of the tokens of all its answers
    over the answers' vocabulary: (images, (n_images, n_words))."""
    images, bags, where = [], [], {}
    for image, _, answer in pairs:
        k = where.setdefault(id(image), len(images))
        if k == len(images):
            images.append(image)
            bags.append(set())
        bags[k].update(tokenizer(answer, add_special_tokens=False).input_ids)
    vocab = sorted(set().union(*bags))
    col = {t: j for j, t in enumerate(vocab)}
    target = torch.zeros(len(images), len(vocab))
    for i, b in enumerate(bags):
        target[i, [col[t] for t in b]] = 1.0
    return images, target


def align_vision(model, processor, pairs: list[tuple], seed: int, steps: int | None = None) -> list[float]:
    """Stage 1: train the vision tower and merger alone (no language-model forward: cheap, 32 images a step) so that
    an image's mean visual token predicts, through a throw-away linear head, which words its answers use (multi-label).

    Why: a random tower's visual tokens mostly encode the background (skin tone, where the lesion sits); what the
    answers are about is a small perturbation of a few tokens. Trained jointly with the language model from there, the
    LM never attends to the image (it learns the text prior first), so the tower's gradient is noise, and Adam at the
    LM's learning rate grows it into a constant: measured, the old build's visual tokens were 80 long and differed
    between two images by 0.3%, and held-out caption loss was the same with true and shuffled images. After this stage
    the tokens differ between images by what the answers say. The merger's output is then rescaled to the length of a
    word embedding (its last layer is linear), so visual tokens enter the LM at the scale of text. Returns the losses."""
    from training.run.tracking import progress

    steps = ALIGN_STEPS if steps is None else steps
    if steps <= 0 or not pairs:
        return []
    visual = model.model.visual
    images, target = _images_and_bags(processor.tokenizer, pairs)
    enc = [processor.image_processor(images=[im], return_tensors="pt") for im in images]
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = torch.nn.Linear(visual.merger.mlp[-1].out_features, target.shape[1])
    params = [p for p in visual.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        [{"params": params, "lr": ALIGN_LR}, {"params": head.parameters(), "lr": ALIGN_HEAD_LR}],
        weight_decay=0.0,
        foreach=False,
    )
    sched = _schedule(opt, steps, 0.05)
    merge = visual.spatial_merge_size**2
    visual.train()
    losses = []
    for _ in progress(range(steps), desc="align embedded vision", unit="step", leave=False):
        idx = torch.randint(0, len(images), (ALIGN_BATCH,), generator=g).tolist()
        grid = torch.cat([enc[i]["image_grid_thw"] for i in idx])
        tokens = visual(torch.cat([enc[i]["pixel_values"] for i in idx]), grid_thw=grid).pooler_output
        pooled = torch.stack([t.mean(0) for t in tokens.split((grid.prod(-1) // merge).tolist())])
        losses.append(
            _step(
                torch.nn.functional.binary_cross_entropy_with_logits(head(pooled), target[idx]),
                params,
                opt,
                sched,
            )
        )
    with torch.no_grad():
        k = min(32, len(enc))
        out = visual(
            torch.cat([e["pixel_values"] for e in enc[:k]]),
            grid_thw=torch.cat([e["image_grid_thw"] for e in enc[:k]]),
        ).pooler_output
        scale = float(model.get_input_embeddings().weight.norm(dim=-1).mean() / out.norm(dim=-1).mean())
        visual.merger.mlp[-1].weight.mul_(scale)
        visual.merger.mlp[-1].bias.mul_(scale)
    model.zero_grad(set_to_none=True)
    model.eval()
    return losses


def image_text_batch(processor, pairs: list[tuple]) -> dict:
    """(image, question, answer) triples -> a right-padded VLM batch with labels on the answer tokens only."""
    texts, prompts = [], []
    for _, question, answer in pairs:
        user = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        prompt = processor.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
        prompts.append(prompt)
        texts.append(prompt + answer + "<|im_end|>")
    enc = processor(
        text=texts, images=[p[0] for p in pairs], return_tensors="pt", padding=True, padding_side="right"
    )
    plen = [len(x) for x in processor(text=prompts, images=[p[0] for p in pairs], padding=False)["input_ids"]]
    labels = enc["input_ids"].clone()
    labels[enc["attention_mask"] == 0] = -100
    for b, n in enumerate(plen):
        labels[b, :n] = -100
    return {**enc, "labels": labels}


def pretrain_vision(model, processor, pairs: list[tuple], seed: int, steps: int | None = None) -> list[float]:
    """Stage 2: train the language model (in place; the vision tower and merger frozen, as stage 1 left them) to answer
    each pair's question about its image. The pairs are taken in the caller's order, VISION_BATCH at a time (cycling):
    the order is the curriculum. Returns the losses. What the images show is the caller's business."""
    from training.run.tracking import progress

    steps = VISION_STEPS if steps is None else steps
    frozen = [p for p in model.model.visual.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=VISION_LR, weight_decay=0.0, foreach=False)
    sched = _schedule(opt, steps, 0.05)
    model.train()
    losses = []
    try:
        for step in progress(range(steps), desc="pretrain embedded vision", unit="step", leave=False):
            batch = image_text_batch(
                processor, [pairs[(step * VISION_BATCH + k) % len(pairs)] for k in range(VISION_BATCH)]
            )
            losses.append(_step(model(**batch, use_cache=False).loss, params, opt, sched))
    finally:
        for p in frozen:
            p.requires_grad_(True)
    model.eval()
    return losses
