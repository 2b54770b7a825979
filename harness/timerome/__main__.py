import sys

from harness.timerome.cli import main

sys.exit(main())
