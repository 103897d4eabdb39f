"""`python -m finetunekit`: the `finetunekit` command line (see `finetunekit.cli`)."""

import sys

from finetunekit.cli import main

if __name__ == "__main__":
    sys.exit(main())
