"""`python -m exchange.cli`, the same as the `exchange` command."""

import sys

from exchange.cli import main

sys.exit(main())
