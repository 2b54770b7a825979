"""`python -m harness.backbones check PATH --adapter NAME` (see harness/backbones/check.py)."""

import sys

from harness.backbones.check import main

sys.exit(main())
