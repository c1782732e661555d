"""How often NLU's top intent links to the FAQ entry that answers a customer's question.

Trains the intent classifier in this process (the embedder kefu runs, the training code
the NLU service runs) on the domain pack, once as kefu trains it and once from the
intents' own examples only (no FAQ questions), and reads every question of
bench/answers with an FAQ entry: a hit when the top intent is one the pack links to one
of the question's entries (intents.yaml `faq:`). Off-topic questions count when the
out-of-scope class outweighs every intent. Prints a table per split; ``--split tune`` is
what thresholds are chosen on.

    .venv/bin/python bench/intent_links.py [--split tune|report|all] [--pack DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from services.demo.pack import faq_stem, load_domain_pack  # noqa: E402
from services.nlu.intents import OUT_OF_SCOPE  # noqa: E402
from services.nlu.training import intent_examples, train_on_texts, training_examples  # noqa: E402

QUESTIONS = [REPO / "bench" / "answers" / f"questions_{name}.jsonl" for name in ("zh", "en", "docs")]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("tune", "report", "all"), default="tune")
    parser.add_argument("--pack", default=str(REPO / "services" / "demo" / "pack"))
    args = parser.parse_args()
    from services.embedding import LocalEmbedder

    pack = load_domain_pack(args.pack)
    embedder = LocalEmbedder()
    questions = [json.loads(line) for path in QUESTIONS for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    questions = [q for q in questions if args.split == "all" or q.get("split") == args.split]
    links: dict[str, set[str]] = {}
    for intent in pack.intents:
        for stem in intent.faq:
            links.setdefault(stem, set()).add(intent.name)
    vectors = np.asarray(await embedder.embed_queries([q["question"] for q in questions]), np.float32)
    print(f"{len(questions)} questions ({args.split}); pack {args.pack}", file=sys.stderr)
    print("| training data | examples | top intent linked to the right entry | off-topic read as out of scope |")
    print("| --- | ---: | ---: | ---: |")
    for name, data in (("intents' examples only", intent_examples(pack)), ("as kefu trains (examples, out-of-scope, FAQ questions)", training_examples(pack))):
        texts, labels, languages = data
        artifact = await train_on_texts(texts, labels, embedder.embed_queries, languages=languages, seed=0)
        probabilities, _, _, _ = artifact.predict(vectors, [q["question"] for q in questions])
        names = list(artifact.labels)
        linked = answerable = off = offtopic = 0
        for q, p in zip(questions, probabilities, strict=True):
            top = names[int(np.argmax(p))]
            if q["kind"] == "offtopic":
                offtopic += 1
                off += top == OUT_OF_SCOPE
            elif q.get("faq_ids"):
                answerable += 1
                linked += top in {i for f in q["faq_ids"] for i in links.get(faq_stem(f), set())}
        print(f"| {name} | {len(texts)} | {linked}/{answerable} ({linked / max(1, answerable):.1%}) | {off}/{offtopic} |")


if __name__ == "__main__":
    asyncio.run(main())
