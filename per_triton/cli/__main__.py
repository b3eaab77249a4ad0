"""``python -m per_triton.cli``: the ``per-triton`` console command."""

import sys

from per_triton.cli import main

sys.exit(main())
