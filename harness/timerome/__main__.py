import sys

from harness.timerome.cli import console_main

sys.exit(console_main())
