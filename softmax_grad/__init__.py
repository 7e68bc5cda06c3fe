"""softmax-grad: the shared contract, tolerances and command line of the suite.

The math lives in two packages that never import each other: ``manual`` (the
hand-derived gradients) and ``reference`` (the oracles). This package holds only
what both sides share without sharing math: input validation and the output
dtype policy (``contract``), the tolerance table (``tolerances``), the
comparison helper (``compare``), and the ``softmax-grad`` command (``cli``),
which is the one place that imports both sides.
"""

__version__ = "0.2.0"
