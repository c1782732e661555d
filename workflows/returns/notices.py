"""What the customer is told as their return, exchange or refund moves on (zh + en).
Pure functions of the saga's state, so the workflow can call them deterministically."""

from __future__ import annotations

from services.dialog.flows.replies import money
from workflows.returns.types import ReturnState

_TEXTS = {
    "authorized": {
        "en": "Your {what} for order {order_id} is approved (RMA {rma_id}). Please send the items back with the prepaid label {label} within {days} days.",
        "zh": "您订单 {order_id} 的{what}申请已受理（退货授权号 {rma_id}）。请在 {days} 天内使用预付面单 {label} 寄回商品。",
    },
    "reminder": {
        "en": "A reminder: we have not received the items for order {order_id} yet. Please send them with label {label}; otherwise the {what} is cancelled in {days} days.",
        "zh": "温馨提醒：订单 {order_id} 的退回商品我们还没有收到。请使用面单 {label} 寄回，否则{what}申请将在 {days} 天后取消。",
    },
    "expired": {
        "en": "We did not receive the items for order {order_id}, so the {what} is cancelled and the order stays delivered. You are welcome to ask again.",
        "zh": "订单 {order_id} 的退回商品未在期限内寄到，{what}申请已取消，订单恢复为已签收。如仍需办理，欢迎再次联系我们。",
    },
    "received": {
        "en": "We have received the items for order {order_id}; they are being inspected.",
        "zh": "订单 {order_id} 的退回商品已收到，正在质检。",
    },
    "rejected": {
        "en": "The items returned for order {order_id} did not pass inspection: {reason}. They will be sent back to you.",
        "zh": "订单 {order_id} 的退回商品未通过质检：{reason}。商品将寄回给您。",
    },
    "refund_pending": {
        "en": "The refund of {amount} for order {order_id} has been issued to your {method}; it usually arrives within 5 to 7 business days.",
        "zh": "订单 {order_id} 的退款 {amount} 已退至您的{method}，一般 5 到 7 个工作日到账。",
    },
    "refunded": {
        "en": "The refund of {amount} for order {order_id} is complete: it is on your {method}.",
        "zh": "订单 {order_id} 的退款 {amount} 已到账（{method}）。",
    },
    "shipped": {
        "en": "The replacement for order {order_id} is on its way: tracking number {tracking_id}.",
        "zh": "订单 {order_id} 的换货商品已发出，快递单号 {tracking_id}。",
    },
    "exchanged": {
        "en": "The replacement for order {order_id} has been delivered. Enjoy!",
        "zh": "订单 {order_id} 的换货商品已签收，祝您使用愉快！",
    },
    "needs_attention": {
        "en": "Something needs a person to finish the {what} for order {order_id}; a colleague will contact you (ticket {ticket_id}).",
        "zh": "订单 {order_id} 的{what}需要人工处理，客服同事会联系您（工单号 {ticket_id}）。",
    },
}
# Where a return, exchange or refund stands, for order and refund status replies.
_PROGRESS = {
    "awaiting_parcel": {
        "en": "Its {what} is approved (RMA {rma_id}); we are waiting for the items, sent with the prepaid label {label}.",
        "zh": "{what}申请已受理（退货授权号 {rma_id}），正在等待您用预付面单 {label} 寄回商品。",
    },
    "inspecting": {"en": "We have received the returned items; they are being inspected.", "zh": "退回的商品已收到，正在质检。"},
    "refund_pending": {
        "en": "The refund of {amount} to your {method} has been issued and is on its way; it usually arrives within 5 to 7 business days.",
        "zh": "退款 {amount} 已退至您的{method}，正在途中，一般 5 到 7 个工作日到账。",
    },
    "refunded": {"en": "The refund of {amount} to your {method} is complete.", "zh": "退款 {amount} 已到账（{method}）。"},
    "replacement_shipped": {
        "en": "The replacement is on its way: tracking number {tracking_id}.",
        "zh": "换货商品已发出，快递单号 {tracking_id}。",
    },
    "exchanged": {"en": "The replacement has been delivered.", "zh": "换货商品已签收。"},
    "expired": {
        "en": "The {what} was cancelled because the items did not arrive in time.",
        "zh": "由于商品未在期限内寄回，{what}申请已取消。",
    },
    "rejected": {"en": "The returned items did not pass inspection: {reason}.", "zh": "退回的商品未通过质检：{reason}。"},
    "needs_attention": {
        "en": "A colleague is handling it (ticket {ticket_id}) and will contact you.",
        "zh": "客服同事正在处理（工单号 {ticket_id}），会与您联系。",
    },
}
_WHAT = {
    "return": {"en": "return", "zh": "退货"},
    "exchange": {"en": "exchange", "zh": "换货"},
    "cancellation": {"en": "refund", "zh": "退款"},
}


def method_name(payment_method_id: str, language: str) -> str:
    zh = language == "zh"
    if "gift_card" in payment_method_id:
        return "礼品卡" if zh else "gift card"
    if "credit_card" in payment_method_id:
        return "信用卡" if zh else "credit card"
    if "paypal" in payment_method_id:
        return "PayPal"
    for key, zh_name, en_name in (("alipay", "支付宝", "Alipay"), ("wechat", "微信支付", "WeChat Pay"), ("unionpay", "银联卡", "UnionPay card")):
        if key in payment_method_id:
            return zh_name if zh else en_name
    return "原支付方式" if zh else "original payment method"


def notice(name: str, state: ReturnState, language: str, **extra: object) -> str:
    return _format(_TEXTS[name], state, language, **extra)


def progress(state: ReturnState, language: str) -> str:
    """One sentence on where the saga stands ("" for a status without one)."""
    texts = _PROGRESS.get(state.status)
    return _format(texts, state, language) if texts else ""


def _format(texts: dict[str, str], state: ReturnState, language: str, **extra: object) -> str:
    lang = "zh" if language == "zh" else "en"
    values = {
        "order_id": state.order_id, "rma_id": state.rma_id, "label": state.label, "reason": state.reason,
        "tracking_id": state.tracking_id, "ticket_id": state.ticket_id,
        "amount": money(state.refund_amount, state.currency), "method": method_name(state.refund_method, lang),
        "what": _WHAT.get(state.kind, _WHAT["return"])[lang],
    }
    values.update(extra)
    return texts[lang].format(**values)
