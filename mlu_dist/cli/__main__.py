"""`python -m mlu_dist.cli`: what the `mlu` command runs (torchrun re-launches use it)."""

import sys

from mlu_dist.cli import main

sys.exit(main())
