"""`python -m bridge` is `fleet-bridge`."""

import sys

from bridge.cli import main

sys.exit(main())
