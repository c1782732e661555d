"""Prompt assembly: policy, retrieved passages and dialog context in the Qwen chat format."""

from __future__ import annotations

from dataclasses import dataclass, field

# Asking for the passage's specific facts, and keeping "not sure" for a passage that
# says nothing about the question, cut the local model's "Not sure." replies to
# questions whose passage answers them from 42 to 14 of the demo FAQ's 122 and
# raised the replies that repeat its figures from 43 to 63 of 109
# (bench/grounded_replies.py, docs/BENCHMARKS.md).
SYSTEM_PROMPT = {
    "zh": (
        "你是「kefu 示例商城」的在线客服助手。请用参考资料里的具体内容（时限、金额、步骤、入口）回答顾客，"
        "用简体中文，语气礼貌，一到三句话。只说参考资料里有的内容，不要编造；"
        "参考资料完全没有提到的，就说不确定并建议转人工客服。"
    ),
    "en": (
        "You are the customer-service assistant of the kefu demo store. Reply to the customer with the specific "
        "facts of the reference (time limits, amounts, steps, where to click), in English, politely, in one to "
        "three sentences. Say only what the reference says; never make anything up. Only if the reference says "
        "nothing about the question, say you are not sure and offer a human agent."
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
