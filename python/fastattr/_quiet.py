"""Third-party chatter off for a CLI run; ``fastattr --verbose`` shows everything.

Libraries print advice, "not installed" notes and progress bars of their own that say nothing
about the user's run and bury fastattr's messages. fastattr's own warnings and every error still
reach stderr.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Iterator

__all__ = ["quiet_third_party"]

# Environment, not calls into the libraries: they read it when first imported (the stages import
# them lazily, after this), spawned workers inherit it, and `fastattr --help` imports nothing.
# Only defaults: a variable the user set wins.
QUIET_ENVIRONMENT = {
    "TRANSFORMERS_VERBOSITY": "error",
    "DIFFUSERS_VERBOSITY": "error",
    "HF_HUB_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # also transformers' "Loading weights" bars
    "TQDM_DISABLE": "1",  # bars libraries draw with tqdm itself; fastattr's own pass `disable` explicitly
    "TORCH_LOGS": "-onnx",  # torch.onnx logs errors only: no "torchvision is not installed" per operator
}

# Matches every module name except fastattr's, whose warnings stay under the filters already in place.
THIRD_PARTY_MODULES = r"(?!fastattr(\.|$))"


@contextlib.contextmanager
def quiet_third_party() -> Iterator[None]:
    """Within the block, third-party loggers say only errors and their Python warnings are dropped.

    The environment and the warning filters are restored afterwards, so calling the CLI in-process
    (tests, notebooks) leaves the caller's settings as they were.

    Example:
        >>> with quiet_third_party():
        ...     os.environ["TRANSFORMERS_VERBOSITY"]
        'error'
    """
    added = [name for name in QUIET_ENVIRONMENT if name not in os.environ]
    os.environ.update({name: QUIET_ENVIRONMENT[name] for name in added})
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=THIRD_PARTY_MODULES)
            yield
    finally:
        for name in added:
            os.environ.pop(name, None)
