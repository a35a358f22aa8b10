"""``python -m attention_atlas …`` = the ``atlas`` command."""
import sys

from attention_atlas.cli import main

if __name__ == "__main__":
    sys.exit(main())
