"""The checker's one exception: the target cannot be judged at all (exit 2 from the command)."""


class CheckError(Exception):
    """The target cannot be loaded, or cannot be called with the kind's signature, or its framework is missing."""
