"""The small result dataclasses that the SDK returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Attribution"]


@dataclass(frozen=True)
class Attribution:
    """One training item named as an influence on a generated image.

    Attributes:
        rank: 1 for the most influential item of the query, then 2, 3, ... (the same numbers the CLI
            and the HTML report print).
        item_id: the training item's id (as in the dataset's items.jsonl).
        score: cosine in the student space; higher means more influential.
        caption: the training item's caption.
        uri: where the training image lives (path or URL), or None when the bundle has none.

    Example:
        >>> Attribution(rank=1, item_id=7, score=0.91, caption="a red square", uri=None).to_dict()["item_id"]
        7
    """

    rank: int
    item_id: int
    score: float
    caption: str
    uri: str | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        return asdict(self)
