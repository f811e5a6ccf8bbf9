"""Where teacher queries come from: a prompts file, a folder of logged generations, or the world's held-out captions."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["QuerySpec", "read_prompts", "assign_splits", "uses_world_captions"]


@dataclass
class QuerySpec:
    """The queries a curation run asks for, before any image exists.

    Exactly one source: ``prompts`` (generated with the model, seeded), ``query_images`` (a folder
    of logged generations in the imagefolder layout: image files + one prompt each), or neither,
    which means the embedded world's held-out captions (only for a world dataset).
    """

    prompts: str | os.PathLike[str] | None = None
    query_images: str | os.PathLike[str] | None = None
    caption_column: str | None = None

    def __post_init__(self) -> None:
        if self.prompts is not None and self.query_images is not None:
            raise InputError("give either --prompts FILE or --query-images DIR, not both")

    def check(self, dataset: Any) -> None:
        """Refuse, before any work, a prompts file that cannot be read, a missing folder of logged
        generations, or no queries at all for a dataset that is not the embedded world."""
        if self.prompts is not None:
            read_prompts(self.prompts)
        elif self.query_images is not None and not Path(self.query_images).exists():
            raise InputError(f"--query-images {self.query_images} does not exist; give a folder of logged "
                             "generations (image files + metadata.jsonl or metadata.csv with file_name and the prompt)")
        uses_world_captions(self, dataset)


def uses_world_captions(spec: QuerySpec, dataset: Any) -> bool:
    """True when ``spec`` names no queries and ``dataset`` is the embedded world (its held-out captions).

    Raises:
        InputError: no queries are named and the dataset is not the embedded world.
    """
    if spec.prompts is not None or spec.query_images is not None:
        return False
    if (getattr(dataset, "meta", None) or {}).get("generator") == "fastattr.world":
        return True
    raise InputError(
        "this dataset is not the embedded world, so there are no built-in query prompts: give "
        "--prompts FILE (one prompt a line; images are generated with the model) or --query-images "
        "DIR (logged generations: image files + metadata.jsonl with file_name and text)")


def read_prompts(path: str | os.PathLike[str]) -> list[tuple[str, str | None]]:
    """(prompt, split or None) per non-empty line of a prompts file.

    A line is a plain prompt, or a JSON object ``{"prompt": "...", "split": "train"|"test"}`` for
    an explicit split. Lines starting with ``#`` are comments.

    Example:
        >>> read_prompts("prompts.txt")  # doctest: +SKIP
        [('a cat on a sofa', None), ('a red square', 'test')]
    """
    file = Path(path)
    if not file.is_file():
        raise InputError(f"prompts file {file} does not exist; give a text file with one prompt a line")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{file} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    out: list[tuple[str, str | None]] = []
    for line_no, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("{"):
            try:
                row: Any = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{file} line {line_no} starts with '{{' but is not JSON ({exc.msg})") from None
            row = row if isinstance(row, dict) else {}
            prompt, split = row.get("prompt"), row.get("split")
            if not isinstance(prompt, str) or not prompt.strip():
                raise InputError(f"{file} line {line_no}: a JSON line needs a non-empty \"prompt\" string")
            if split not in (None, "train", "test"):
                raise InputError(f"{file} line {line_no}: split must be 'train' or 'test', got {split!r}")
            out.append((prompt, split))
        else:
            out.append((line, None))
    if not out:
        raise InputError(f"{file} holds no prompts (one prompt a line; '#' starts a comment)")
    return out


def assign_splits(explicit: list[str | None], *, n_train: int, n_test: int,
                  source: str) -> list[tuple[int, str]]:
    """Which queries to use and their splits, as (index, split) pairs in file order.

    Queries with an explicit split keep it (the first ``n_test`` / ``n_train`` of each); the
    others, in file order, fill what is left of the test split first, then the train split. The
    rule is stated so the split is reproducible from the file alone; the teacher set records it
    per query.

    Example:
        >>> assign_splits([None, "test", None], n_train=2, n_test=1, source="prompts.txt")
        [(0, 'train'), (1, 'test'), (2, 'train')]
    """
    chosen: dict[int, str] = {}
    counts = {"train": 0, "test": 0}
    wanted = {"train": n_train, "test": n_test}
    for i, split in enumerate(explicit):
        if split is not None and counts[split] < wanted[split]:
            chosen[i] = split
            counts[split] += 1
    for i, split in enumerate(explicit):
        if split is None:
            pick = "test" if counts["test"] < n_test else "train" if counts["train"] < n_train else None
            if pick is not None:
                chosen[i] = pick
                counts[pick] += 1
    if not chosen:
        raise InputError(f"{source} gives no query for {n_train} train and {n_test} test queries")
    if counts["test"] < n_test or counts["train"] < n_train:
        raise InputError(
            f"{source} has {len(explicit)} queries, enough for {counts['train']} train and {counts['test']} test, "
            f"but {n_train} train and {n_test} test were asked (--train-queries/--test-queries)")
    return sorted(chosen.items())
