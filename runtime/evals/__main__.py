"""``python -m runtime.evals``: see :mod:`runtime.evals.cli`."""

import sys

from runtime.evals.cli import main

sys.exit(main())
