"""`python -m cmhost` runs the cmhost command."""

import sys

from cmhost.cli import main

sys.exit(main())
