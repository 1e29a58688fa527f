"""`python -m minidiff.bench`: runs cli.main (see cli.py for the flags)."""
import sys

from .cli import main

sys.exit(main())
