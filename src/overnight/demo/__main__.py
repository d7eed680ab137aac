"""`python -m overnight.demo [--model provider:model]`: the demo without the CLI."""

from __future__ import annotations

import sys

from . import main

if __name__ == "__main__":
    args = sys.argv[1:]
    model = args[args.index("--model") + 1] if "--model" in args else None
    sys.exit(main(model=model))
