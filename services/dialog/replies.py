"""Fixed reply texts of the dialog policy, in Chinese and English."""

from __future__ import annotations

REPLIES = {
    "abstain": {
        "zh": "抱歉，这个问题我不太确定，不想给您错误的答复。需要我为您转人工客服或创建工单吗？您可以回复「转人工」。",
        "en": "Sorry, I'm not sure about that and don't want to give you a wrong answer. "
        "Shall I connect you with a human agent or open a ticket? Just reply \"talk to a person\".",
    },
    "ticket_created": {
        "zh": "已为您转接人工客服，并创建工单 {ticket_id}。客服人员会尽快联系您，请保留工单号以便查询。",
        "en": "I've passed your conversation to a human agent and opened ticket {ticket_id}. "
        "An agent will contact you shortly; please keep the ticket number for reference.",
    },
}


def reply(name: str, language: str, **values: str) -> str:
    texts = REPLIES[name]
    return texts.get(language, texts["en"]).format(**values)
