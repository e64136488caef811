"""`python -m preread.send`: the clinic sender alone (nothing of the service is imported)."""

import sys

from preread.send.cli import entry

sys.exit(entry())
