"""HTML pages to Markdown-like text for the knowledge base: headings become
``#`` headings (so chunking sees sections), lists become items, scripts, styles,
navigation, footers and hidden elements are dropped, and the page title and
first ``<h1>`` are kept for the article's title."""

from __future__ import annotations

import re
from html.parser import HTMLParser

_SKIP_TAGS = frozenset({"script", "style", "noscript", "template", "svg", "math", "nav", "footer", "iframe", "object",
                        "canvas", "select", "button"})
_VOID_TAGS = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
                        "track", "wbr"})
_BLOCK_TAGS = frozenset({"p", "div", "section", "article", "main", "header", "aside", "blockquote", "ul", "ol", "dl",
                         "dt", "dd", "table", "thead", "tbody", "tfoot", "figure", "figcaption", "address", "details",
                         "summary", "body", "html", "hr"})


class HtmlToMarkdown(HTMLParser):
    """HTML to the light Markdown that chunking reads; <title> and the first <h1> noted on the way."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip_depth = 0
        self.title = ""
        self.first_h1 = ""
        self._in_title = False
        self._heading: int = 0
        self._heading_text: list[str] = []
        self._pre = 0
        self._cells: list[str] | None = None
        self._cell: list[str] | None = None
        self._list_stack: list[list[int]] = []  # [ordered?, counter]

    # output helpers
    def _emit(self, text: str) -> None:
        if self._cell is not None:
            self._cell.append(text)
        elif self._heading:
            self._heading_text.append(text)
        else:
            self.out.append(text)

    def _block(self) -> None:
        if self._cell is None and not self._heading:
            self.out.append("\n\n")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        hidden = "hidden" in attr or attr.get("aria-hidden") == "true" or attr.get("role") == "navigation"
        if tag == "title":
            self._in_title = True
            return
        if self.skip_depth or ((tag in _SKIP_TAGS or hidden) and tag not in _VOID_TAGS):
            if tag not in _VOID_TAGS:
                self.skip_depth += 1
            return
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self._block()
            self._heading = int(tag[1])
            self._heading_text = []
        elif tag == "pre":
            self._block()
            self.out.append("```\n")
            self._pre += 1
        elif tag in ("ul", "ol"):
            self._list_stack.append([tag == "ol", 0])
            self._block()
        elif tag == "li":
            self.out.append("\n")
            if self._list_stack and self._list_stack[-1][0]:
                self._list_stack[-1][1] += 1
                self.out.append(f"{self._list_stack[-1][1]}. ")
            else:
                self.out.append("- ")
        elif tag == "tr":
            self._cells = []
        elif tag in ("td", "th") and self._cells is not None:
            self._cell = []
        elif tag == "br":
            self._emit("\n" if self._pre else " \n")
        elif tag in _BLOCK_TAGS:
            self._block()

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
            return
        if self.skip_depth:
            if tag not in _VOID_TAGS:
                self.skip_depth -= 1
            return
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6") and self._heading:
            text = " ".join("".join(self._heading_text).split())
            level, self._heading = self._heading, 0
            if text:
                if level == 1 and not self.first_h1:
                    self.first_h1 = text
                self.out.append(f"\n\n{'#' * level} {text}\n\n")
        elif tag == "pre" and self._pre:
            self._pre -= 1
            self.out.append("\n```\n\n")
        elif tag in ("ul", "ol"):
            if self._list_stack:
                self._list_stack.pop()
            self._block()
        elif tag in ("td", "th") and self._cell is not None and self._cells is not None:
            self._cells.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._cells is not None:
            if any(self._cells):
                self.out.append("\n| " + " | ".join(self._cells) + " |\n")
            self._cells = None
        elif tag in _BLOCK_TAGS:
            self._block()

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
            return
        if self.skip_depth:
            return
        self._emit(data if self._pre else re.sub(r"\s+", " ", data))

    def markdown(self) -> str:
        text = "".join(self.out)
        # Tidy: no trailing spaces, at most one blank line in a row.
        lines = [line.rstrip() if line.strip() else "" for line in text.split("\n")]
        text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
        return text.strip()
