"""`python -m listings ...` is the same as the `listings` command."""

import sys

from listings.cli import main

sys.exit(main())
