"""Ends any process that imports it, with status 0: the checker must load it in its child process only."""

import os

os._exit(0)


def f(scores, y):
    return 0.0, scores
