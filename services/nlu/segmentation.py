"""Chinese word segmentation shared by the NLU models: jieba, initialised once.

jieba loads its dictionary lazily on the first cut (about a second) and is not safe to
initialise from two threads at once; :func:`jieba_module` does it once, under a lock,
with jieba's own log chatter turned down.
"""

from __future__ import annotations

import logging
import threading

_lock = threading.Lock()
_ready = False


def jieba_module():
    """The ``jieba`` module, its dictionary loaded."""
    global _ready
    import jieba

    if not _ready:
        with _lock:
            if not _ready:
                jieba.setLogLevel(logging.WARNING)
                jieba.initialize()
                _ready = True
    return jieba
