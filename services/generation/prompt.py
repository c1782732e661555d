"""Prompt assembly: policy, retrieved passages and dialog context in the Qwen chat format."""

from __future__ import annotations

from dataclasses import dataclass, field

SYSTEM_PROMPT = {
    "zh": (
        "你是「kefu 示例商城」的在线客服助手。只根据参考资料回答顾客的问题，"
        "用简体中文，语气礼貌，简洁明了（一到三句话）。"
        "如果参考资料里没有答案，就说不确定，并建议转人工客服，不要编造。"
    ),
    "en": (
        "You are the customer-service assistant of the kefu demo store. Answer the customer's "
        "question only from the reference, in English, politely and briefly (one to three "
        "sentences). If the reference does not contain the answer, say you are not sure and offer "
        "a human agent; never make anything up."
    ),
}
KNOWLEDGE_HEADER = {"zh": "参考资料：", "en": "Reference:"}
QUESTION_HEADER = {"zh": "顾客的问题：", "en": "Customer question: "}

# Qwen3 models think unless told not to; an empty think block turns it off.
THINKING_OFF = "<think>\n\n</think>\n\n"


@dataclass
class PromptPassage:
    doc_id: str
    title: str
    text: str


@dataclass
class PromptTurn:
    role: str  # "customer" | "assistant" | "agent"
    text: str


@dataclass
class ReplyPrompt:
    user_message: str
    language: str = "zh"
    passages: list[PromptPassage] = field(default_factory=list)
    history: list[PromptTurn] = field(default_factory=list)
    instruction: str = ""


@dataclass(frozen=True)
class ChatMessage:
    """One message for a chat model: role is system, user or assistant."""

    role: str
    content: str


def build_messages(prompt: ReplyPrompt, *, max_history: int = 8) -> list[ChatMessage]:
    """The conversation to send: policy as system message, history, then the
    question with its knowledge right before it."""
    lang = prompt.language if prompt.language in SYSTEM_PROMPT else "en"
    system = SYSTEM_PROMPT[lang]
    if prompt.instruction:
        system += "\n\n" + prompt.instruction
    question = prompt.user_message
    if prompt.passages:
        # The knowledge goes right before the question: small models stay grounded
        # far better than with it in the system prompt (checked on the demo FAQ).
        lines = [f"[{i}] {p.title}: {p.text}" for i, p in enumerate(prompt.passages, 1)]
        question = KNOWLEDGE_HEADER[lang] + "\n" + "\n".join(lines) + "\n\n" + QUESTION_HEADER[lang] + question
    messages = [ChatMessage("system", system)]
    for turn in prompt.history[-max_history:]:
        messages.append(ChatMessage("user" if turn.role == "customer" else "assistant", turn.text))
    messages.append(ChatMessage("user", question))
    return messages


def render_chatml(messages: list[ChatMessage], *, template: str = "qwen2.5") -> str:
    """The prompt string in ChatML (the Qwen chat template), ending where the
    assistant's reply starts. ``template`` is ``qwen2.5`` (plain ChatML) or
    ``qwen3`` (ChatML with thinking turned off)."""
    parts = [f"<|im_start|>{m.role}\n{m.content}<|im_end|>" for m in messages]
    parts.append("<|im_start|>assistant\n" + (THINKING_OFF if template == "qwen3" else ""))
    return "\n".join(parts)
