"""Build a small domain language model and its dictionary, for ``SAGEBIDI_TRANSCRIBE_LM``/``_DICT``.

A trigram ARPA model of your sentences (pocketsphinx's own builder, ``pocketsphinx_lm -a -s``)
with a pronunciation dictionary cut down to its words: with the full 134k-word dictionary a small
LM takes ~12 s to load, with the cut one ~10 ms (and about 7 MB per decoder instead of 90).
Recognition is then limited to those words, and much more accurate on them.

    python -m sagebidi_perf.models.transcribe.domain sentences.txt out/
    SAGEBIDI_TRANSCRIBE_LM=out/domain.arpa SAGEBIDI_TRANSCRIBE_DICT=out/domain.dict \\
        sagebidi serve --model transcribe
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pocketsphinx  # type: ignore[import-untyped]
from pocketsphinx.lm import ArpaBoLM  # type: ignore[import-untyped]

__all__ = ["build_domain_lm", "main"]

_VARIANT = re.compile(r"\(\d+\)$")


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"\s+", text.lower()) if w]


def build_domain_lm(text: str, directory: Path, name: str = "domain") -> tuple[Path, Path]:
    """Write ``<name>.arpa`` and ``<name>.dict`` for ``text`` (one sentence a line) into
    ``directory``; raises ValueError naming the words the bundled dictionary cannot pronounce."""
    sentences = [" ".join(_words(line)) for line in text.splitlines()]
    sentences = [s for s in sentences if s]
    if not sentences:
        raise ValueError("no sentences to build a language model from")
    vocabulary = {w for s in sentences for w in s.split()}
    full = Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict"
    lines = []
    known = set()
    with full.open(encoding="utf-8") as source:
        for line in source:
            head = line.split(" ", 1)[0]
            word = _VARIANT.sub("", head)
            if word in vocabulary:
                lines.append(line.rstrip("\n"))
                known.add(word)
    missing = sorted(vocabulary - known)
    if missing:
        raise ValueError(f"not in the pronunciation dictionary: {', '.join(missing)}")
    model = ArpaBoLM(text="\n".join(sentences) + "\n", add_start=True)
    model.compute()
    directory.mkdir(parents=True, exist_ok=True)
    lm_path = directory / f"{name}.arpa"
    dict_path = directory / f"{name}.dict"
    model.write_file(str(lm_path))
    dict_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lm_path, dict_path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m sagebidi_perf.models.transcribe.domain SENTENCES.txt OUT_DIR")
        return 2
    try:
        lm, dictionary = build_domain_lm(Path(args[0]).read_text(encoding="utf-8"), Path(args[1]))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"SAGEBIDI_TRANSCRIBE_LM={lm}")
    print(f"SAGEBIDI_TRANSCRIBE_DICT={dictionary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
