"""Stop strings matched on sampled token ids, one token at a time, for every decoding loop.

A stop string may span tokens ("</an" + "swer>"), so matching each token's text alone misses it, and decoding a
row's whole output every step costs O(length) per token. For byte-level BPE tokenizers (GPT-2's scheme: Qwen,
Llama 3) each token id maps to fixed bytes, so a row's state is the longest tail of its output bytes that begins
some stop string, and a (state, token) step is resolved once and memoised. Other tokenizers fall back to decoding
the row's last few tokens. The group sampler (`training.rollout.engine`) and the multi-turn tree sampler
(`training.rollout.tree_decode`) both end turns here, so a stop string ends a completion the same way in either.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any


def _byte_level_alphabet() -> dict[str, int]:
    """Byte-level BPE's printable stand-in for every byte (GPT-2's scheme, used by Qwen and Llama 3): printable
    Latin-1 bytes stand for themselves, the other 68 are shifted to code points 256 and up, in byte order."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    out, shift = {chr(b): b for b in keep}, 0
    for b in range(256):
        if b not in out.values():
            out[chr(256 + shift)] = b
            shift += 1
    return out


_TOKEN_BYTES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def token_bytes(tokenizer: Any) -> list[bytes] | None:
    """The bytes of every token id, for byte-level BPE tokenizers; None when the tokenizer is not one, or when
    joining the bytes of a sample of ids does not reproduce `tokenizer.decode` (then stops fall back to text)."""
    try:
        return _TOKEN_BYTES[tokenizer]
    except (KeyError, TypeError):
        pass
    alphabet = _byte_level_alphabet()
    added = {int(i): t.content.encode() for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items()}
    n = len(tokenizer)
    table: list[bytes] | None = []
    for i, tok in enumerate(tokenizer.convert_ids_to_tokens(list(range(n)))):
        if i in added:
            table.append(added[i])
        elif tok is None or any(c not in alphabet for c in tok):
            table = None
            break
        else:
            table.append(bytes(alphabet[c] for c in tok))
    if table is not None:
        step = max(1, n // 64)
        samples = [list(range(i, min(i + 48, n))) for i in range(0, n, step)] + [sorted(added)]
        for ids in samples:
            text = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
            if b"".join(table[i] for i in ids).decode("utf-8", errors="replace") != text:
                table = None
                break
    try:
        _TOKEN_BYTES[tokenizer] = table
    except TypeError:
        pass
    return table


class StopStrings:
    """Per-row stop-string matching fed one token id at a time.

    Byte-level tokenizers: each row's state is the longest tail of its output bytes that begins some stop
    string; a (state, token) pair is resolved once and memoised, so a step costs one dict look-up per live row.
    Other tokenizers: the row's last few tokens are decoded (enough for the longest stop string).
    """

    def __init__(self, tokenizer: Any, stop_strings: Sequence[str]):
        self.tokenizer = tokenizer
        self.stops = [s for s in stop_strings if s]
        self.table = token_bytes(tokenizer) if self.stops else None
        self.byte_stops = [s.encode() for s in self.stops]
        self.prefixes = {s[:i] for s in self.byte_stops for i in range(len(s))}
        self.longest = max((len(s) for s in self.byte_stops), default=0)
        self.window = max((len(s) for s in self.stops), default=0) + 2  # text fallback: >= 1 char per token
        self.memo: dict[tuple[bytes, int], tuple[bytes, bool]] = {}

    def __bool__(self) -> bool:
        return bool(self.stops)

    def start(self) -> Any:
        """A new row's state."""
        return b"" if self.table is not None else []

    def feed(self, state: Any, token: int) -> tuple[Any, bool]:
        """(the row's new state, whether a stop string has just been completed)."""
        if self.table is None:
            state.append(token)
            tail = self.tokenizer.decode(state[-self.window :], skip_special_tokens=False)
            return state, any(s in tail for s in self.stops)
        key = (state, token)
        hit = self.memo.get(key)
        if hit is None:
            text = state + (self.table[token] if 0 <= token < len(self.table) else b"")
            if any(s in text for s in self.byte_stops):
                hit = (b"", True)
            else:
                k = min(len(text), self.longest - 1)
                while k > 0 and text[len(text) - k :] not in self.prefixes:
                    k -= 1
                hit = (text[len(text) - k :] if k else b"", False)
            self.memo[key] = hit
        return hit

    def cut(self, text: str) -> str:
        """The text up to and including the first stop string."""
        ends = [text.find(s) + len(s) for s in self.stops if s in text]
        return text[: min(ends)] if ends else text
