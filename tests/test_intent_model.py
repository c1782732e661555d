"""The intent classifier: training, calibration, versions in Triton, dynamic batching.

The Triton tests use the session's real tritonserver and its model repository
(``model_repository/intent_classifier/<n>/``, not in git): they publish new versions
there, trained on the whole demo pack, so a later test sees an equally good model.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import numpy as np

from services.config import REPO_ROOT
from services.demo.pack import load_domain_pack
from services.embedding import TritonEmbedder
from services.nlu.intents import IntentMatcher, TritonIntentModel
from services.nlu.training import (
    ensure_intent_model,
    fit_intent_classifier,
    intent_versions,
    publish_intent_version,
    train_intent_classifier,
    training_examples,
    training_data_hash,
)
from services.serving.intent_model import IntentArtifact
from services.serving.triton_client import EmbedderClient, IntentClassifierClient

# Customer messages written for this test, in none of the pack's examples.
HELD_OUT = [
    ("我想跟人工客服聊聊", "human_agent"),
    ("please let me speak with an actual human", "human_agent"),
    ("你们卖家发错货了，我非常生气，要投诉", "complaint"),
    ("我上周买的包裹现在到哪儿了？", "order_status"),
    ("my package still hasn't arrived, where is it", "order_status"),
    ("收到的鞋子不喜欢，能退吗，怎么操作", "return_request"),
    ("退款到账要几天？", "refund_status"),
    ("How long until the money is back on my card?", "refund_status"),
    ("Do you deliver to Macau and how much does it cost?", "shipping_info"),
    ("能用银联卡付款吗", "payment_methods"),
    ("I need a company invoice with our tax number", "invoice"),
    ("登录时一直提示密码错误", "account_security"),
    ("哈喽，有人在吗", "greeting"),
    ("好的，没别的事了，拜拜", "goodbye"),
    ("这件外套有XL码吗", "product_inquiry"),
]
TIMEOUT = 60.0


# ------------------------------------------------------------------ no Triton


WORDS = "order parcel refund money card invoice login password size colour coupon delivery".split()


def _clusters(seed: int = 7, intents: int = 6, per_intent: int = 18) -> tuple[np.ndarray, list[str], list[str]]:
    """Unit vectors around one random centre per intent (e5-like: a shared component), with
    texts of random words (the lexical features carry no signal here)."""
    rng = np.random.default_rng(seed)
    common = rng.normal(size=384)
    centres = rng.normal(size=(intents, 384)) * 0.35 + common
    x = np.concatenate([c + rng.normal(size=(per_intent, 384)) * 0.45 for c in centres])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    texts = [" ".join(rng.choice(WORDS, size=4)) for _ in range(len(x))]
    return x.astype(np.float32), [f"intent_{i}" for i in range(intents) for _ in range(per_intent)], texts


def test_training_is_deterministic_and_calibrated():
    x, labels, texts = _clusters()
    a = fit_intent_classifier(x, labels, texts, seed=3)
    b = fit_intent_classifier(x, labels, texts, seed=3)
    for name in ("mean", "weights", "bias", "examples"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.vectorizer.vocabulary == b.vectorizer.vocabulary and a.detector.threshold == b.detector.threshold
    assert a.temperature == b.temperature and a.temperature > 0
    assert a.labels == sorted(set(labels))

    probs, similarity, novelty, out = a.predict(x, texts)
    assert probs.shape == (len(x), 6) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(similarity, 1.0, atol=1e-5)  # each example is its own nearest neighbour
    m = a.meta["metrics"]
    # The temperature minimises held-out NLL, and T = 1 is one of the candidates.
    assert m["heldout_nll"] <= m["heldout_nll_uncalibrated"] + 1e-9
    assert m["heldout_accuracy"] > 0.9

    other = fit_intent_classifier(x, labels, texts, seed=4)  # another split: another temperature
    assert other.temperature != a.temperature

    # Out of scope: the threshold lets ~2% of in-scope (out-of-fold) examples through;
    # directions unlike every intent are flagged.
    assert 0.0 < m["heldout_in_scope_rejected"] <= 0.05
    assert out.mean() <= 0.05
    rng = np.random.default_rng(11)
    far = rng.normal(size=(50, 384))
    far /= np.linalg.norm(far, axis=1, keepdims=True)
    _, _, far_novelty, far_out = a.predict(far.astype(np.float32), texts[:50])
    assert far_out.mean() >= 0.9 and far_novelty.mean() > novelty.mean()


def test_an_oos_class_is_learned_and_flags_out_of_scope():
    x, labels, texts = _clusters(intents=4)
    rng = np.random.default_rng(5)
    oos = rng.normal(size=(30, 384))
    oos /= np.linalg.norm(oos, axis=1, keepdims=True)
    a = fit_intent_classifier(np.concatenate([x, oos]).astype(np.float32), labels + ["oos"] * 30, texts + ["zz"] * 30, seed=0)
    assert "oos" in a.labels and a.meta["metrics"]["heldout_oos_recall"] >= 0.9
    probe = rng.normal(size=(20, 384))
    probe /= np.linalg.norm(probe, axis=1, keepdims=True)
    assert a.predict(probe.astype(np.float32), ["zz"] * 20)[3].all()
    assert not a.predict(x[:20], texts[:20])[3].any()


def test_the_pack_teaches_its_examples_its_out_of_scope_and_its_faq_questions():
    """What the classifier learns from a pack: the intents' examples, the out-of-scope
    examples as the ``oos`` class, and the questions of every FAQ entry that one intent
    alone links to, as that intent's (an entry two intents share teaches neither)."""
    from services.demo.pack import DomainPack, FaqEntry, Intent

    def intent(name: str, zh: str, en: str, faq: list[str]) -> Intent:
        return Intent(name, "answer", name, {"zh": [zh], "en": [en]}, faq=faq)

    pack = DomainPack(
        intents=[intent("returns", "能退货吗", "can I return it", ["returns-7day"]),
                 intent("sizes", "尺码怎么选", "which size", ["size-guide", "shared"]),
                 intent("fit", "合身吗", "does it fit", ["shared"])],
        faq=[FaqEntry("returns-7day-zh", "zh", "t", ["能退货吗", "拆了吊牌还能退吗"], "a"),
             FaqEntry("returns-7day-en", "en", "t", ["Can I return a worn shirt?"], "a"),
             FaqEntry("size-guide-en", "en", "t", ["I'm 180 cm, M or L?"], "a"),
             FaqEntry("shared-en", "en", "t", ["Does it run small?"], "a")],
        out_of_scope={"zh": ["明天下雨吗"], "en": ["write me a poem"]},
    )
    texts, labels, languages = training_examples(pack)
    assert list(zip(texts, labels, languages, strict=True)) == [
        ("can I return it", "returns", "en"), ("能退货吗", "returns", "zh"),
        ("which size", "sizes", "en"), ("尺码怎么选", "sizes", "zh"),
        ("does it fit", "fit", "en"), ("合身吗", "fit", "zh"),
        ("write me a poem", "oos", "en"), ("明天下雨吗", "oos", "zh"),
        ("拆了吊牌还能退吗", "returns", "zh"),  # 能退货吗 is an example already
        ("Can I return a worn shirt?", "returns", "en"),
        ("I'm 180 cm, M or L?", "sizes", "en"),
    ]
    assert training_data_hash(pack) != training_data_hash(DomainPack(pack.intents, pack.faq))


async def _fake_embed(texts: list[str]) -> np.ndarray:
    rng = np.random.default_rng(abs(hash(tuple(texts))) % 2**32)
    v = rng.normal(size=(len(texts), 384))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_versions_are_published_atomically_and_pruned(tmp_path: Path):
    repo = tmp_path / "repo"
    (repo / "intent_classifier").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "model_repository" / "intent_classifier" / "config.pbtxt", repo / "intent_classifier")
    pack = load_domain_pack(REPO_ROOT / "services" / "demo" / "pack")
    artifact = asyncio.run(train_intent_classifier(pack, _fake_embed, folds=2))
    assert artifact.meta["data_hash"] == training_data_hash(pack)

    assert [publish_intent_version(repo, artifact, keep=2) for _ in range(3)] == [1, 2, 3]
    model_dir = repo / "intent_classifier"
    assert intent_versions(model_dir) == [2, 3]  # version 1 pruned
    assert sorted(p.name for p in model_dir.iterdir()) == ["2", "3", "config.pbtxt"]  # no temporary folder left
    version = model_dir / "3"
    assert sorted(p.name for p in version.iterdir()) == ["labels.json", "meta.json", "model.py", "weights.npz"]
    assert len((version / "model.py").read_text().splitlines()) == 3
    assert json.loads((version / "meta.json").read_text())["version"] == 3
    loaded = IntentArtifact.load(version)
    texts = ["你好", "where is my order"]
    x = np.asarray(asyncio.run(_fake_embed(texts)))
    for got, want in zip(loaded.predict(x, texts), artifact.predict(x, texts), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
    # Every intent, and the out-of-scope examples' class.
    assert loaded.labels == sorted([i.name for i in pack.intents] + ["oos"])


# ------------------------------------------------------------------ real Triton


async def _stats(client: IntentClassifierClient | EmbedderClient, model: str) -> tuple[int, int]:
    """(inferences, executions) summed over the model's versions."""
    stats = await client._get().get_inference_statistics(model, as_json=True)
    rows = stats.get("model_stats", [])
    return sum(int(r.get("inference_count", 0)) for r in rows), sum(int(r.get("execution_count", 0)) for r in rows)


def test_intent_model_serves_retrains_and_batches(triton_server):
    cfg, server = triton_server
    pid = server.pid
    pack = load_domain_pack(cfg.domain_pack)

    async def run():
        embedder = TritonEmbedder(cfg.triton_grpc_target)
        classifier = IntentClassifierClient(cfg.triton_grpc_target, model=cfg.models.intent_model)
        raw_embedder = EmbedderClient(cfg.triton_grpc_target, model=cfg.models.embedder_model)
        try:
            t0 = time.perf_counter()
            first = await ensure_intent_model(cfg, embedder, classifier, pack=pack)
            ensure_s = time.perf_counter() - t0
            assert first >= 1
            assert await classifier.serving_version() == first
            assert (await classifier.versions())[first] == "READY"

            # Held-out paraphrases through Triton.
            x = await embedder.embed_queries([t for t, _ in HELD_OUT])
            prediction = await classifier.classify(x, [t for t, _ in HELD_OUT], timeout_s=TIMEOUT)
            assert prediction.version == str(first)
            assert prediction.probabilities.shape == (len(HELD_OUT), len(pack.intents) + 1)  # + the oos class
            np.testing.assert_allclose(prediction.probabilities.sum(axis=1), 1.0, atol=1e-5)
            assert prediction.out_of_scope.shape == prediction.novelty.shape == (len(HELD_OUT),)
            flagged = [t for (t, _), o in zip(HELD_OUT, prediction.out_of_scope, strict=True) if o]
            predicted = [prediction.labels[i] for i in prediction.probabilities.argmax(axis=1)]
            hits = [p == want for p, (_, want) in zip(predicted, HELD_OUT, strict=True)]
            misses = [(t, want, p) for p, (t, want) in zip(predicted, HELD_OUT, strict=True) if p != want]
            print(f"[intent] version {first} ready in {ensure_s:.1f} s; held-out accuracy {np.mean(hits):.3f}; misses {misses}; "
                  f"flagged out of scope {flagged}")

            # The matcher NLU uses: handoff, smalltalk and an off-topic message.
            matcher = IntentMatcher(embedder, TritonIntentModel(classifier))
            ranked = {}
            for text in ("我要投诉，转人工", "I want to talk to a person", "hello", "What is your return policy?",
                         "今天天气怎么样？帮我写一首关于火星的诗"):
                ranked[text] = await matcher.rank(text, 3)
            # End-to-end latency of one message (embedder + classifier in Triton), one at a time: printed, not asserted.
            times = []
            for text, _ in HELD_OUT * 2:
                t0 = time.perf_counter()
                await matcher.rank(text, 3)
                times.append((time.perf_counter() - t0) * 1000)
            print(f"[intent] matcher.rank through Triton: p50 {np.percentile(times, 50):.1f} ms, p95 {np.percentile(times, 95):.1f} ms")

            # Retrain (another seed: another calibration split) and swap versions in place.
            t0 = time.perf_counter()
            second = await ensure_intent_model(cfg, embedder, classifier, pack=pack, retrain=True, seed=1)
            swap_s = time.perf_counter() - t0
            after = await classifier.versions()
            for _ in range(100):  # the old version finishes unloading in the background
                if after.get(first) in (None, "UNAVAILABLE"):
                    break
                await asyncio.sleep(0.1)
                after = await classifier.versions()
            again = await classifier.classify(x[:1], [HELD_OUT[0][0]], timeout_s=TIMEOUT)

            # Dynamic batching: 32 concurrent single-row requests to each model.
            before_ic = await _stats(classifier, cfg.models.intent_model)
            before_em = await _stats(raw_embedder, cfg.models.embedder_model)
            singles = await asyncio.gather(*(classifier.classify(x[i % len(x)][None, :], [HELD_OUT[i % len(x)][0]], timeout_s=TIMEOUT)
                                             for i in range(32)))
            vectors = await asyncio.gather(*(raw_embedder.embed([f"query: 订单 {i} 到哪了"], timeout_s=TIMEOUT) for i in range(32)))
            # Triton records a batch's statistics just after its responses: poll briefly.
            for _ in range(50):
                after_ic = await _stats(classifier, cfg.models.intent_model)
                after_em = await _stats(raw_embedder, cfg.models.embedder_model)
                if after_ic[0] - before_ic[0] >= 32 and after_em[0] - before_em[0] >= 32:
                    break
                await asyncio.sleep(0.1)
            return (first, hits, flagged, ranked, second, swap_s, after, again, singles, vectors,
                    np.subtract(after_ic, before_ic), np.subtract(after_em, before_em))
        finally:
            await embedder.close()
            await classifier.close()
            await raw_embedder.close()

    first, hits, flagged, ranked, second, swap_s, after, again, singles, vectors, ic, em = asyncio.run(run())

    assert np.mean(hits) >= 0.8, hits
    assert all(hits[:3]), "the handoff paraphrases must be right"
    assert len(flagged) <= 1, f"in-scope paraphrases flagged out of scope: {flagged}"

    def action_confidence(text: str, action: str) -> float:
        return sum(s.confidence for s in ranked[text][0] if pack.intent(s.name).action == action)

    assert action_confidence("我要投诉，转人工", "handoff") >= 0.7
    assert action_confidence("I want to talk to a person", "handoff") >= 0.7
    assert ranked["hello"][0][0].name == "greeting" and not ranked["hello"][1]
    assert ranked["What is your return policy?"][0][0].name == "return_policy"
    assert ranked["今天天气怎么样？帮我写一首关于火星的诗"][1], "an off-topic message is out of scope"

    # Version 2 of this run serves, the one before is unloaded, Triton was not restarted.
    assert second == first + 1
    assert after[second] == "READY" and after.get(first) in (None, "UNAVAILABLE"), after
    assert again.version == str(second)
    assert server.pid == pid
    print(f"[intent] retrained and swapped to version {second} in {swap_s:.1f} s; states {after}")

    assert len(singles) == 32 and all(s.probabilities.shape == (1, len(pack.intents) + 1) for s in singles)
    assert all(s.version == str(second) for s in singles)
    assert len(vectors) == 32 and all(v.shape == (1, 384) for v in vectors)
    print(f"[batching] intent_classifier: {ic[0]} inferences in {ic[1]} executions; embedder: {em[0]} in {em[1]}")
    # Triton updates statistics just after each batch, so a request from before the
    # snapshot can land in the difference: at least the 32, in fewer executions.
    assert ic[0] >= 32 and em[0] >= 32
    assert em[1] < 32, "the embedder's dynamic batcher should have merged concurrent requests"
    assert ic[1] < 32, "the intent classifier's dynamic batcher should have merged concurrent requests"
