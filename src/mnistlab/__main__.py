"""`python -m mnistlab` is the same as the `mnistlab` command."""

import sys

from mnistlab.commands.main import main

sys.exit(main())
