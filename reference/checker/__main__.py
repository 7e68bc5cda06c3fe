"""``python -m reference.checker FILE.npz TARGET``: rerun a saved failing case (see ``reference.checker.repro``)."""

import sys

from reference.checker.repro import main

if __name__ == "__main__":
    sys.exit(main())
