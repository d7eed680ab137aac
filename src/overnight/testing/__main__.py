"""`python -m overnight.testing [--trials N] [--seed S] [--quiet]`: a crash campaign."""

from __future__ import annotations

import sys

from .crash.campaign import main

sys.exit(main())
