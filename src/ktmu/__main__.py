"""``python -m ktmu``: the ``ktmu`` command line."""
import sys

from ktmu.cli import main

sys.exit(main())
