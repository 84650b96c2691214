"""The transcribe model's settings, read once from arguments or ``SAGEBIDI_TRANSCRIBE_*``.

=====================================  ==========  ==============================================
environment variable                   default     meaning
=====================================  ==========  ==============================================
``SAGEBIDI_TRANSCRIBE_DECODERS``       3           decoders loaded per worker (~90 MB each with
                                                   the general model) = concurrent streams
``SAGEBIDI_TRANSCRIBE_POOL_WAIT``      5           seconds a stream waits for a free decoder
                                                   before it is closed with 1013
``SAGEBIDI_TRANSCRIBE_IDLE_TIMEOUT``   10          seconds without audio or a text message
                                                   before the close 1011 NET-0001 (Deepgram's)
``SAGEBIDI_TRANSCRIBE_LM``             (bundled)   a language model (ARPA or binary)
``SAGEBIDI_TRANSCRIBE_DICT``           (bundled)   its pronunciation dictionary
=====================================  ==========  ==============================================
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["TranscribeSettings"]

_PREFIX = "SAGEBIDI_TRANSCRIBE_"
_ENV_NAMES = {"dictionary": "DICT"}


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscribeSettings:
    decoders: int = 3
    pool_wait: float = 5.0
    idle_timeout: float = 10.0
    lm: str | None = None
    dictionary: str | None = None

    def __post_init__(self) -> None:
        if self.decoders < 1:
            raise ValueError(f"decoders must be >= 1, got {self.decoders}")
        for name in ("pool_wait", "idle_timeout"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.lm is not None and not os.path.isfile(self.lm):
            raise ValueError(f"language model not found: {self.lm}")
        if self.dictionary is not None and not os.path.isfile(self.dictionary):
            raise ValueError(f"dictionary not found: {self.dictionary}")

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: object
    ) -> TranscribeSettings:
        """Explicit ``overrides`` (not None) > ``SAGEBIDI_TRANSCRIBE_*`` > defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name, kind in (
            ("decoders", int),
            ("pool_wait", float),
            ("idle_timeout", float),
            ("lm", str),
            ("dictionary", str),
        ):
            raw = env.get(_PREFIX + _ENV_NAMES.get(name, name.upper()))
            if raw is not None and raw.strip():
                try:
                    values[name] = kind(raw.strip())
                except ValueError:
                    raise ValueError(f"{_PREFIX}{name.upper()}: bad value {raw!r}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
