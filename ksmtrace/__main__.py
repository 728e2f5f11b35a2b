"""Allow ``python -m ksmtrace``."""

from ksmtrace.cli import main

raise SystemExit(main())
