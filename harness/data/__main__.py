"""CLI: `python -m harness.data summary --tofu-dir DIR` / `python -m harness.data synth --out DIR`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.data.errors import DataError
from harness.data.prepare import prepare_corpus
from harness.data.reader import load_corpus
from harness.data.subjects import subject_source_counts
from harness.data.synth import ANSWER_STYLES, DEFAULT_ANSWER_STYLE, write_synthetic


def summary_lines(tofu_dir: str | Path) -> list[str]:
    """One line per split found, sorted by split name."""
    corpus = load_corpus(tofu_dir)
    lines = []
    for split in sorted(corpus):
        c = subject_source_counts(corpus[split])
        lines.append(
            f"{split}: {len(corpus[split])} records (given={c['given']}, "
            f"inferred={c['inferred']}, fallback_last_token={c['fallback_last_token']})"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_sum = sub.add_parser("summary", help="validate a TOFU-format directory and count records")
    p_sum.add_argument("--tofu-dir", required=True, type=Path)
    p_syn = sub.add_parser("synth", help="write a synthetic TOFU-format corpus")
    p_syn.add_argument("--out", required=True, type=Path)
    p_syn.add_argument("--authors", type=int, default=100)
    p_syn.add_argument("--facts-per-author", type=int, default=10)
    p_syn.add_argument("--seed", type=int, default=0)
    p_syn.add_argument("--answer-style", choices=sorted(ANSWER_STYLES),
                       default=DEFAULT_ANSWER_STYLE,
                       help="how answers are worded (docs/data.md, 'Answer styles'); "
                            "default: %(default)s")
    p_pre = sub.add_parser("prepare", help="write the corpus the workflow's jobs read "
                           "(validation split, author subset, author ids)")
    p_pre.add_argument("--source", required=True, type=Path)
    p_pre.add_argument("--out", required=True, type=Path)
    p_pre.add_argument("--forget-split", required=True)
    p_pre.add_argument("--retain-split", required=True)
    # No defaults: the workflow passes data.* from its schema-validated config.
    p_pre.add_argument("--validation-split", required=True)
    p_pre.add_argument("--validation-authors", type=int, required=True)
    p_pre.add_argument("--authors", type=int, default=None, help="omit: every author")
    p_pre.add_argument("--seed", type=int, required=True)
    p_pre.add_argument("--facts-per-author", type=int, default=20)
    args = parser.parse_args(argv)

    try:
        if args.command == "prepare":
            manifest = prepare_corpus(args.source, args.out, args.forget_split,
                                      args.retain_split, validation_split=args.validation_split,
                                      validation_authors=args.validation_authors,
                                      authors=args.authors, seed=args.seed,
                                      facts_per_author=args.facts_per_author)
            print(f"validation ({manifest['validation']}): authors "
                  f"{manifest['validation_authors']}; kept authors: "
                  f"{manifest['authors'] if manifest['authors'] is not None else 'all'}")
            tofu_dir = args.out
        elif args.command == "synth":
            tofu_dir = write_synthetic(args.out, args.authors, args.facts_per_author, args.seed,
                                       answer_style=args.answer_style)
        else:
            tofu_dir = args.tofu_dir
        lines = summary_lines(tofu_dir)
    except (DataError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
