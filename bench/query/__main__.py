"""``python -m bench.query``: run the query-path benchmark and write its report (see run.py)."""

import sys

from .run import main

sys.exit(main())
