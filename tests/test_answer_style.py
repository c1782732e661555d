"""The default answer style: the passage verbatim (chosen by `kefu eval answers`)."""

from __future__ import annotations

import grpc
import yaml

from kefu.v1 import dialog_pb2, dialog_pb2_grpc
from services.config import REPO_ROOT, KefuConfig
from tests.conftest import converse


def test_the_default_style_is_the_passage_verbatim(lone_service):
    assert KefuConfig().dialog.answer_style == "verbatim"

    def verbatim(own: KefuConfig) -> None:
        own.dialog.answer_style = "verbatim"

    _, own = lone_service("dialog", configure=verbatim)
    faq = {e["id"]: e["answer"] for e in yaml.safe_load((REPO_ROOT / "services/demo/pack/faq.yaml").read_text(encoding="utf-8"))["entries"]}
    with grpc.insecure_channel(own.target("dialog")) as channel:
        stub = dialog_pb2_grpc.DialogStub(channel)
        _, result = converse(stub, "运费怎么算？")
        # Two questions in one message, two entries: both answers, in the order asked.
        _, both = converse(stub, "签收5天了还能无理由退吗？退了的话钱多久能回到微信")
    assert [a.type for a in result.actions] == [dialog_pb2.ACTION_TYPE_ANSWER]
    assert result.actions[0].detail["style"] == "verbatim"
    assert result.reply_text == faq[result.citations[0].doc_id]
    assert len(result.citations) == 1
    cited = [c.doc_id for c in both.citations]
    assert cited == ["returns-7day-zh", "refunds-timing-zh"], cited  # in the order asked
    assert both.reply_text == "\n\n".join(faq[d] for d in cited)
