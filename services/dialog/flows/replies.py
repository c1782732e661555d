"""Templated replies of the task flows, in Chinese and English. Every value filled in
comes from the store or from what the customer said; nothing is generated."""

from __future__ import annotations

from typing import Any

FLOW_REPLIES: dict[str, dict[str, str]] = {
    "ask_identity": {
        "en": "I can help with that. First I need to verify your identity: please give me the email address on your account, or your first and last name and zip code.",
        "zh": "可以帮您处理。请先验证身份：请提供账户邮箱，或您的姓名和邮编。",
    },
    "ask_identity_phone": {
        "en": "I can help with that. First I need to verify your identity: please give me the phone number or email address on your account.",
        "zh": "可以帮您处理。请先验证身份：请提供账户绑定的手机号或邮箱。",
    },
    "offer_task": {
        "en": "If you'd like me to do this for you now, give me the email address on your account, or your first and last name and zip code.",
        "zh": "如需我直接为您办理，请提供账户邮箱，或您的姓名和邮编。",
    },
    "offer_task_phone": {
        "en": "If you'd like me to do this for you now, give me the phone number or email address on your account.",
        "zh": "如需我直接为您办理，请提供账户绑定的手机号或邮箱。",
    },
    "identity_not_found": {
        "en": "I couldn't find an account with those details. Please check the email address, or give me your first and last name and zip code.",
        "zh": "没有找到与这些信息匹配的账户。请核对邮箱，或提供您的姓名和邮编。",
    },
    "identity_not_found_phone": {
        "en": "I couldn't find an account with those details. Please check the phone number or email address on your account.",
        "zh": "没有找到与这些信息匹配的账户。请核对账户绑定的手机号或邮箱。",
    },
    "one_customer": {
        "en": "I can only help with the account you've already verified in this conversation. For another account, please start a new conversation as that customer.",
        "zh": "本次会话只能处理您已验证的这个账户。如需处理其他账户，请以该账户重新发起会话。",
    },
    "identified_how_help": {
        "en": "Thank you, {name}, your identity is verified. How can I help you today?",
        "zh": "谢谢{name}，身份已验证。请问需要办理什么？",
    },
    "goodbye": {"en": "You're welcome! Have a great day.", "zh": "不客气，祝您生活愉快！"},
    "anything_else": {"en": "Is there anything else I can help you with?", "zh": "还有其他可以帮您的吗？"},
    "ask_order": {
        "en": "Which order is it? These are the orders on your account that qualify:\n{orders}\nYou can tell me the order number or what is in it.",
        "zh": "请问是哪一单？您账户中符合条件的订单有：\n{orders}\n告诉我订单号或里面的商品即可。",
    },
    "order_not_yours": {
        "en": "I can't find order {order_id} on your account. Please check the order number, or tell me what's in the order.",
        "zh": "在您的账户中没有找到订单 {order_id}。请核对订单号，或告诉我订单里的商品。",
    },
    "no_eligible_orders": {
        "en": "I don't see any order on your account that can be {flow} right now.",
        "zh": "您的账户目前没有可以{flow}的订单。",
    },
    "wrong_status": {
        "en": "Order {order_id} is {status}, so it can't be {flow}.",
        "zh": "订单 {order_id} 当前状态为「{status}」，无法{flow}。",
    },
    "flow_cancel_order": {"en": "cancelled (only pending orders can be)", "zh": "取消（只有待处理的订单可以取消）"},
    "flow_modify_order_address": {"en": "changed (only pending orders can be modified)", "zh": "修改（只有待处理的订单可以修改）"},
    "flow_modify_order_payment": {"en": "changed (only pending orders can be modified)", "zh": "修改（只有待处理的订单可以修改）"},
    "flow_return_items": {"en": "returned (only delivered orders can be)", "zh": "退货（只有已签收的订单可以退货）"},
    "flow_change_items": {
        "en": "changed (items of pending orders can be modified, items of delivered orders exchanged)",
        "zh": "换货或改商品（待处理订单可改商品，已签收订单可换货）",
    },
    "flow_order_status": {"en": "looked up", "zh": "查询"},
    "flow_refund_status": {
        "en": "checked for a refund (it has no return, exchange or cancellation)",
        "zh": "查询退款（该订单没有退货、换货或取消）",
    },
    "flow_modify_user_address": {"en": "changed", "zh": "修改"},
    "ask_items": {
        "en": "Which items of order {order_id}? It contains: {items}.",
        "zh": "订单 {order_id} 中的哪些商品？订单包含：{items}。",
    },
    "ask_new_item": {
        "en": "What would you like instead of the {item} ({options})? Tell me the options you want, e.g. a colour or size.",
        "zh": "{item}（{options}）想换成什么款式？请告诉我想要的颜色、尺码等选项。",
    },
    "no_variant": {
        "en": "Sorry, there is no available {item} with {wanted}. Which other options would work for you?",
        "zh": "抱歉，{item}没有「{wanted}」的可售款式。换成其他选项可以吗？",
    },
    "several_variants": {
        "en": "There are several available {item} options that fit: {choices}. Which one would you like?",
        "zh": "{item}有几个符合的款式：{choices}。您要哪一个？",
    },
    "ask_refund_method": {
        "en": "Where should the refund go? It can go to the original payment method or to a gift card (store balance): {methods}.",
        "zh": "退款退到哪里？可以原路退回，也可以退到余额或礼品卡：{methods}。",
    },
    "ask_new_payment": {
        "en": "Which payment method would you like to use instead? On your account: {methods}.",
        "zh": "想改用哪种支付方式？您账户中有：{methods}。",
    },
    "ask_difference_payment": {
        "en": "Which payment method should pay or receive the price difference? On your account: {methods}.",
        "zh": "差价用哪种支付方式支付或退回？您账户中有：{methods}。",
    },
    "ask_reason": {
        "en": "May I ask the reason for cancelling: is it no longer needed, or was it ordered by mistake?",
        "zh": "请问取消原因是「不再需要」还是「误下单」？",
    },
    "ask_address": {
        "en": "What is the new address? Please give the street, apartment or suite (if any), city, state, zip code and country.",
        "zh": "新地址是什么？请提供街道门牌、楼栋房号（如有）、城市、省/州、邮编和国家。",
    },
    "confirm_cancel": {
        "en": "To confirm: cancel order {order_id} ({items}), reason \"{reason}\". The {amount} you paid will be refunded to the original payment method. Shall I go ahead? (yes/no)",
        "zh": "请确认：取消订单 {order_id}（{items}），原因「{reason}」，已付 {amount} 将原路退回。确认办理吗？（是/否）",
    },
    "confirm_order_address": {
        "en": "To confirm: change the shipping address of order {order_id} to {address}. Shall I go ahead? (yes/no)",
        "zh": "请确认：将订单 {order_id} 的收货地址改为 {address}。确认办理吗？（是/否）",
    },
    "confirm_user_address": {
        "en": "To confirm: change your default address to {address}. Shall I go ahead? (yes/no)",
        "zh": "请确认：将您的默认地址改为 {address}。确认办理吗？（是/否）",
    },
    "confirm_payment": {
        "en": "To confirm: pay order {order_id} ({amount}) with your {payment} instead; the original payment will be refunded. Shall I go ahead? (yes/no)",
        "zh": "请确认：订单 {order_id}（{amount}）改用 {payment} 支付，原支付款项将退回。确认办理吗？（是/否）",
    },
    "confirm_return": {
        "en": "To confirm: return from order {order_id}: {items}. The refund of {amount} goes to your {payment}. Shall I go ahead? (yes/no)",
        "zh": "请确认：订单 {order_id} 退货：{items}，退款 {amount} 退到 {payment}。确认办理吗？（是/否）",
    },
    "confirm_exchange": {
        "en": "To confirm: exchange in order {order_id}:\n{changes}\n{difference} An exchange can be made only once per order, so please make sure these are all the items you want to exchange. Shall I go ahead? (yes/no)",
        "zh": "请确认：订单 {order_id} 换货：\n{changes}\n{difference}每个订单只能换货一次，请确认已包含所有要换的商品。确认办理吗？（是/否）",
    },
    "confirm_modify_items": {
        "en": "To confirm: change the items of pending order {order_id}:\n{changes}\n{difference} Items can be changed only once per order, so please make sure these are all the changes you want. Shall I go ahead? (yes/no)",
        "zh": "请确认：修改待处理订单 {order_id} 的商品：\n{changes}\n{difference}每个订单只能修改一次商品，请确认已包含所有修改。确认办理吗？（是/否）",
    },
    "confirm_generic": {"en": "Shall I go ahead? (yes/no)", "zh": "确认办理吗？（是/否）"},
    "diff_pay": {"en": "You pay the difference of {amount} with your {payment}.", "zh": "差价 {amount} 由 {payment} 支付。"},
    "diff_refund": {"en": "The difference of {amount} is refunded to your {payment}.", "zh": "差价 {amount} 退回 {payment}。"},
    "diff_none": {"en": "There is no price difference.", "zh": "没有差价。"},
    "confirm_again": {
        "en": "Please answer yes to go ahead with the change above, or no if something should be different.",
        "zh": "请回复「是」确认办理，或回复「否」说明哪里需要修改。",
    },
    "not_confirmed": {
        "en": "All right, I haven't changed anything. Which order and items should it be?",
        "zh": "好的，没有做任何更改。请问应该是哪一单、哪些商品？",
    },
    "back_to_task": {"en": "Back to your request: ", "zh": "回到您刚才的事情："},
    "running": {"en": "One moment, I'm doing that now.", "zh": "请稍候，正在为您办理。"},
    "cannot": {"en": "Sorry, I can't do that: {reason}.", "zh": "抱歉，无法办理：{reason}。"},
    "rejected": {"en": "Sorry, the store did not accept the change: {reason}. Nothing was changed.", "zh": "抱歉，系统未能办理：{reason}。没有做任何更改。"},
    "done_cancel": {
        "en": "Done: order {order_id} is now {status}. The refund of {amount} goes back to your original payment method within 5 to 7 business days.",
        "zh": "已办理：订单 {order_id} 当前状态为「{status}」。退款 {amount} 将在 5 到 7 个工作日内原路退回。",
    },
    "done_cancel_gift": {
        "en": "Done: order {order_id} is now {status}. The refund of {amount} is already back on your gift card.",
        "zh": "已办理：订单 {order_id} 当前状态为「{status}」。退款 {amount} 已退回您的礼品卡。",
    },
    "done_return": {
        "en": "Done: order {order_id} is now \"{status}\". The return authorisation and a prepaid label for sending the items back follow in a moment.",
        "zh": "已办理：订单 {order_id} 当前状态为「{status}」。退货授权号和预付寄回面单稍后发给您。",
    },
    "done_exchange": {
        "en": "Done: order {order_id} is now \"{status}\". The return authorisation and a prepaid label for sending the items back follow in a moment; no new order is needed.",
        "zh": "已办理：订单 {order_id} 当前状态为「{status}」。退货授权号和预付寄回面单稍后发给您，无需重新下单。",
    },
    "done_modify_items": {
        "en": "Done: the items of order {order_id} are changed and its status is now \"{status}\".",
        "zh": "已办理：订单 {order_id} 的商品已修改，当前状态为「{status}」。",
    },
    "done_payment": {
        "en": "Done: order {order_id} is paid with the new payment method and stays {status}; the original payment will be refunded.",
        "zh": "已办理：订单 {order_id} 已改用新的支付方式，状态仍为「{status}」，原支付款项将退回。",
    },
    "done_order_address": {
        "en": "Done: order {order_id} will be shipped to {address}.",
        "zh": "已办理：订单 {order_id} 将寄往 {address}。",
    },
    "done_user_address": {"en": "Done: your default address is now {address}.", "zh": "已办理：您的默认地址已改为 {address}。"},
    "done_generic": {"en": "Done.", "zh": "已办理。"},
    "status": {
        "en": "Order {order_id} is {status}. It contains: {items}.",
        "zh": "订单 {order_id} 当前状态为「{status}」，包含：{items}。",
    },
    "tracking": {"en": "Tracking number: {tracking}.", "zh": "快递单号：{tracking}。"},
}


def money(amount: float, currency: str = "USD") -> str:
    if currency == "CNY":
        return f"¥{amount:,.2f}"
    return f"${amount:,.2f}"


# Order statuses as customers read them.
STATUS_NAMES = {
    "pending": ("待发货", "pending"),
    "processed": ("已发货，运输中", "processed"),
    "delivered": ("已签收", "delivered"),
    "cancelled": ("已取消", "cancelled"),
    "refunded": ("已退款", "refunded"),
    "return requested": ("退货申请中", "return requested"),
    "exchange requested": ("换货申请中", "exchange requested"),
    "returned": ("已退货", "returned"),
    "partially returned": ("部分退货", "partially returned"),
    "exchanged": ("已换货", "exchanged"),
    "pending (item modified)": ("待发货（商品已修改）", "pending (item modified)"),
}


def status_name(status: str, language: str) -> str:
    names = STATUS_NAMES.get(status)
    if names is None:
        return status
    return names[0] if language == "zh" else names[1]


# Why the store refused, by the port's rejection code, for Chinese replies (English
# replies use the store's own reason).
REJECTIONS_ZH = {
    "order_not_found": "找不到这个订单",
    "wrong_status": "订单当前状态不允许这项操作",
    "item_not_found": "订单中没有这件商品",
    "item_unavailable": "想换的款式目前无货",
    "payment_not_found": "账户中没有这个支付方式",
    "payment_not_allowed": "退款只能原路退回或退到余额",
    "insufficient_balance": "余额不足以支付差价",
    "invalid_reason": "取消原因只能是「不再需要」或「误下单」",
    "customer_not_found": "找不到这个账户",
    "window_passed": "已超过签收后 7 天的退换货期限",
    "not_returnable": "该商品不支持 7 天无理由退换货",
}


def rejection(code: str, reason: str, language: str) -> str:
    if language == "zh" and code in REJECTIONS_ZH:
        return REJECTIONS_ZH[code]
    return reason


def say(key: str, language: str, **values: Any) -> str:
    texts = FLOW_REPLIES[key]
    return texts.get(language, texts["en"]).format(**values)
