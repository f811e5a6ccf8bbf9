"""The teacher: attribution by unlearning (AbU diagonal, AbU+ EK-FAC) and teacher-set curation.

Names load lazily so that `fastattr --help` does not import torch (DESIGN.md §2).

Example:
    >>> from fastattr.teacher import CurationConfig
    >>> CurationConfig().fisher_kind
    'ekfac'
"""

from __future__ import annotations

from fastattr._lazy import lazy_exports

__all__ = [
    "CurationConfig",
    "KVFisher",
    "TeacherSet",
    "apply_delta",
    "curate",
    "curate_folders",
    "fit_fisher",
    "fit_fisher_on_folders",
    "grid_losses",
    "load_fisher",
    "load_teacher_set",
    "query_gradient",
    "unlearning_delta",
]

_LAZY = {
    "CurationConfig": "fastattr.teacher.curate",
    "curate": "fastattr.teacher.curate",
    "KVFisher": "fastattr.teacher.ekfac",
    "load_fisher": "fastattr.teacher.ekfac",
    "fit_fisher": "fastattr.teacher.fisher",
    "curate_folders": "fastattr.teacher.pipeline",
    "fit_fisher_on_folders": "fastattr.teacher.pipeline",
    "grid_losses": "fastattr.teacher.scoring",
    "TeacherSet": "fastattr.teacher.teacher_set",
    "load_teacher_set": "fastattr.teacher.teacher_set",
    "apply_delta": "fastattr.teacher.unlearn",
    "query_gradient": "fastattr.teacher.unlearn",
    "unlearning_delta": "fastattr.teacher.unlearn",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__, globals())
