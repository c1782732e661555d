"""``kefu eval intents | slots | sentiment``: train on one file, report on another.

Each command lives with its model (``add_arguments(parser)`` and ``run(args) -> int``
in ``services.nlu.intent_eval``, ``slot_eval`` and ``sentiment_eval``); this module
only registers them under ``kefu eval``.
"""

from __future__ import annotations

import importlib

COMMANDS = {
    "intents": (
        "services.nlu.intent_eval",
        "train an intent classifier on TRAIN and report accuracy, macro-F1, out-of-scope recall and latency on TEST",
    ),
    "slots": ("services.nlu.slot_eval", "train the slot tagger on TRAIN (BIO JSONL) and report slot F1 and exact match on TEST"),
    "sentiment": ("services.nlu.sentiment_eval", "train the sentiment classifier on TRAIN and report accuracy and macro-F1 on TEST"),
}


def add_nlu_commands(eval_sub) -> None:
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)  # light: heavy imports happen inside run()
        parser = eval_sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip())
        module.add_arguments(parser)
        parser.set_defaults(func=module.run)
