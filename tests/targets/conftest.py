"""pytest must never import the targets that are hostile at import (``--doctest-modules`` imports every module)."""

collect_ignore = ["exits_at_import.py"]
