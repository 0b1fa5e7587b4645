"""The environment protocol of multi-step rollouts, and a registry so recipes name environments by string.

An environment is what answers the policy between its turns (a case that reveals findings, a tool, a search
engine). It knows nothing about tokens; the samplers (`training.rollout.tree_decode`) own decoding and calls it with text:

- ``reset(record) -> str``: start an episode for one RL record; returns the first observation (appended to the
  record's last user message; "" for none).
- ``step(action_text) -> (observation, done, info)``: one model turn in, the observation to show next, whether
  the episode is over, and a dict of plain values (logged; the sampler keeps the last one per trajectory).

The sampler deep-copies an environment to branch a trajectory (Tree-GRPO), so keep its state plain (no open
files or sockets); ``max_turns`` (an attribute, optional) caps turns; ``stop_strings`` (optional) end a model
turn, e.g. ``["</ask>", "</answer>"]``. Register a factory with ``@environment("name")`` in a module the recipe
lists under ``rollout.env_modules``.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from training.errors import ConfigError


@runtime_checkable
class Environment(Protocol):
    """What the tree and chain samplers need from an environment (see the module docstring)."""

    def reset(self, record: dict) -> str: ...

    def step(self, action: str) -> tuple[str, bool, dict[str, Any]]: ...


ENVIRONMENTS: dict[str, Callable[..., Environment]] = {}
# How an observation enters the token stream after a model turn (its tokens are inputs, never trained).
OBSERVATION = "\n<observation>{}</observation>\n"
_OBS = re.compile(r"\n?<observation>.*?</observation>\n?", re.S)


def split_turns(transcript: str) -> list[str]:
    """The model's turns of a decoded multi-turn completion (observations removed); empty turns dropped."""
    return [t for t in _OBS.split(transcript) if t.strip()]


def with_first_observation(prompt: list[dict], first: str) -> list[dict]:
    """A copy of a record's messages with the environment's first observation appended to the last user message:
    what the policy is conditioned on, in training (`training.rollout.tree_decode`) and when a person steps through (`app`)."""
    import copy

    msgs = copy.deepcopy(prompt)
    if first:
        last = msgs[-1]
        if isinstance(last.get("content"), list):
            last["content"].append({"type": "text", "text": "\n\n" + first})
        else:
            last["content"] = f"{last.get('content', '')}\n\n{first}"
    return msgs


def environment(name: str) -> Callable[[Callable[..., Environment]], Callable[..., Environment]]:
    """Register an environment factory under ``name`` (called with the recipe's ``rollout.env_args``)."""

    def wrap(factory: Callable[..., Environment]) -> Callable[..., Environment]:
        ENVIRONMENTS[name] = factory
        return factory

    return wrap


def make_env(name: str, modules: list[str] | tuple[str, ...] = (), **kwargs: Any) -> Environment:
    """A fresh environment: import ``modules`` (they register), then call the factory registered as ``name``."""
    for mod in modules:
        try:
            importlib.import_module(mod)
        except ImportError as e:
            raise ConfigError(f"rollout.env_modules: cannot import {mod!r} ({e})") from e
    if name not in ENVIRONMENTS:
        raise ConfigError(
            f"rollout.env: unknown environment {name!r}; registered: {sorted(ENVIRONMENTS)} "
            "(list the module that registers it under rollout.env_modules)"
        )
    env = ENVIRONMENTS[name](**kwargs)
    if not isinstance(env, Environment):
        raise ConfigError(f"rollout.env: {name!r} made a {type(env).__name__}, which has no reset/step")
    return env
