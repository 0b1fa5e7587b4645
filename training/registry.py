"""Name -> function registries, one signature each: advantage estimators, policy losses, rewards.

As verl registers its advantage estimators and policy losses: a function joins a registry through that
registry's decorator, `@REGISTRY.register("name")`. The registry checks the function's parameters against its
one signature when it registers (so a wrong signature fails at import, not at step 300), a name already taken
by another function is an error, and an unknown name is a one-line error that lists the registered ones. A
recipe selects an entry by name; new methods join without touching the loop that calls them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from training.errors import ConfigError, MedrlError

F = TypeVar("F", bound=Callable[..., Any])


class Registry(Generic[F]):
    """Functions of one kind by name; every one takes `params` first (and `**fields` when `var_keyword`)."""

    def __init__(self, kind: str, params: tuple[str, ...], var_keyword: bool = False):
        self.kind = kind
        self.params = params
        self.var_keyword = var_keyword
        self._fns: dict[str, F] = {}
        self._info: dict[str, dict[str, Any]] = {}

    @property
    def signature(self) -> str:
        return f"fn({', '.join(self.params)}{', **fields' if self.var_keyword else ''})"

    def register(self, name: str, **info: Any) -> Callable[[F], F]:
        """Decorator: register the function under `name`; `info` is what callers may ask of it (`info(name)`)."""

        def deco(fn: F) -> F:
            self._check_signature(name, fn)
            old = self._fns.get(name)
            if old is not None and _origin(old) != _origin(fn):
                raise MedrlError(
                    f"{self.kind} '{name}' is already registered by {_origin(old)}; "
                    f"{_origin(fn)} must choose another name"
                )
            self._fns[name] = fn
            self._info[name] = info
            return fn

        return deco

    def get(self, name: str, key: str) -> F:
        """The function registered as `name`; `key` is the recipe key that named it, for the error."""
        if name not in self._fns:
            raise ConfigError(
                f"{key}: unknown {self.kind} {name!r} (registered: {', '.join(self.names()) or 'none'})"
            )
        return self._fns[name]

    def info(self, name: str) -> dict[str, Any]:
        return self._info.get(name, {})

    def names(self) -> list[str]:
        return sorted(self._fns)

    def __contains__(self, name: object) -> bool:
        return name in self._fns

    def _check_signature(self, name: str, fn: Callable[..., Any]) -> None:
        params = list(inspect.signature(fn).parameters.values())
        named = tuple(p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
        has_kwargs = any(p.kind is p.VAR_KEYWORD for p in params)
        ok = named[: len(self.params)] == self.params and (has_kwargs or not self.var_keyword)
        if not ok:
            raise MedrlError(
                f"{self.kind} '{name}' ({_origin(fn)}): expected the signature {self.signature}, got "
                f"fn{inspect.signature(fn)}"
            )


def _origin(fn: Callable[..., Any]) -> str:
    """module.qualname: the same function imported twice (or reloaded) is not a clash."""
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
