"""Fixed reply texts of the dialog policy, in Chinese and English."""

from __future__ import annotations

REPLIES = {
    "abstain": {
        "zh": "抱歉，这个问题我不太确定，不想给您错误的答复。需要我为您转人工客服或创建工单吗？您可以回复「转人工」。",
        "en": "Sorry, I'm not sure about that and don't want to give you a wrong answer. "
        "Shall I connect you with a human agent or open a ticket? Just reply \"talk to a person\".",
    },
    "other_shop": {
        "zh": "这听起来是{shop}那边的订单或问题，我只能解答本店的订单和规则，具体请联系{shop}的客服。"
        "如果和本店也有关系，我可以为您转人工客服或创建工单，您可以回复「转人工」。",
        "en": "That sounds like an order or question for {shop}: I can only answer for orders and rules of our own store, "
        "so {shop}'s customer service is the place to ask. If our store is involved too, I can connect you with a human agent "
        "or open a ticket: just reply \"talk to a person\".",
    },
    "dissatisfied_handoff": {
        "zh": "非常抱歉给您带来了不好的体验。我已为您转接人工客服，并创建工单 {ticket_id}，客服人员会尽快联系您。",
        "en": "I'm very sorry for the trouble. I've passed your conversation to a human agent and opened ticket {ticket_id}; "
        "an agent will contact you shortly.",
    },
    "screened": {
        "zh": "抱歉，我只能帮您处理购物、订单和售后方面的问题，无法执行这类指令。请问有什么购物方面的问题需要帮忙吗？",
        "en": "Sorry, I can only help with shopping, orders and after-sales questions, "
        "and can't follow instructions like that. Is there anything about your order I can help with?",
    },
    "clarify": {
        "zh": "我想确认一下：您是想咨询「{first}」，还是「{second}」？",
        "en": "Just to be sure: do you mean \"{first}\" or \"{second}\"?",
    },
    "agent_holding": {
        "zh": "您的消息已转达给正在为您服务的人工客服，客服会尽快回复您。",
        "en": "Your message has been passed to the human agent looking after your conversation; they will reply shortly.",
    },
    "ticket_queued": {
        "zh": "已为您登记转人工请求，工单号 {ticket_id}。系统正在恢复中，客服人员会尽快联系您，请保留工单号以便查询。",
        "en": "I've recorded your request for a human agent as ticket {ticket_id}. Our systems are catching up; "
        "an agent will contact you as soon as possible. Please keep the ticket number for reference.",
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
