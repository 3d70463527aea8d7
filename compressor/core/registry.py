"""Handlers registered by config type (never discovered by scanning names)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class Registry(Generic[F]):
    """Maps a pydantic config class to the function that carries it out."""

    def __init__(self, name: str):
        self.name = name
        self._handlers: dict[type, F] = {}

    def register(self, config_type: type) -> Callable[[F], F]:
        def deco(fn: F) -> F:
            if config_type in self._handlers:
                raise ValueError(f"{self.name}: {config_type.__name__} registered twice")
            self._handlers[config_type] = fn
            return fn

        return deco

    def get(self, config: Any) -> F:
        try:
            return self._handlers[type(config)]
        except KeyError:
            known = ", ".join(sorted(t.__name__ for t in self._handlers))
            raise KeyError(f"{self.name}: no handler for {type(config).__name__} (known: {known})") from None

    def __contains__(self, config_type: type) -> bool:
        return config_type in self._handlers

    def items(self) -> list[tuple[type, F]]:
        """(config type, handler) pairs, in registration order."""
        return list(self._handlers.items())


# Stage handlers: ``fn(ctx: RunContext, config) -> dict`` (the stage's results for metrics.json).
STAGES: Registry = Registry("stage")
