"""Reading the student's inputs: the dataset folder, and the teacher set (read by the teacher's own reader)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# One reader of the teacher-set folder, beside its writer; the student uses it as it is.
from ..teacher.teacher_set import TeacherSet, load_teacher_set

__all__ = ["Items", "TeacherSet", "load_teacher_set", "load_items"]


@dataclass
class Items:
    """What the student needs of a dataset: images (uint8 N×H×W×3) and captions, in row order."""

    images: np.ndarray
    captions: list[str]

    def __len__(self) -> int:
        return len(self.captions)


def load_items(dataset: Any) -> Items:
    """The images and captions of a dataset (a loaded ``fastattr.data.Dataset`` or a folder).

    Example:
        >>> items = load_items("data/world")  # doctest: +SKIP
    """
    from ..data import open_dataset

    ds = open_dataset(dataset)
    return Items(images=ds.images, captions=list(ds.captions))
