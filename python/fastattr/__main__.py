"""`python -m fastattr` runs the CLI."""

from .cli import main

raise SystemExit(main())
