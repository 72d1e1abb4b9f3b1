"""Drafts: the file `feedsvc new` starts, and the edit `feedsvc publish` makes to take it
live. Pure: bytes and the time in, bytes out; the commands (feedsvc.cli) read and write.

A draft carries `draft: true`, which keeps it out of every feed and page. Publishing
removes that line and sets `date:` to the moment it goes live, and changes nothing else
in the file: not the rest of the front matter (its quoting, comments, order, line
endings), not the body. The file keeps its name, so the item's id (`tag:` URI, made from
the name's date, category and slug) and its page are the same from the day the draft was
started: nothing a reader has seen is ever renamed.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime

import yaml

from feedsvc import itemfile
from feedsvc.config import Settings
from feedsvc.model import Item

#: How `new` and `publish` write a date: minutes, in the site's time zone (no offset
#: needed: an item's date without one is in the site's zone).
DATE_FORMAT = "%Y-%m-%d %H:%M"
PLACEHOLDER = "Write the story here, in Markdown.\n"
SLUG_LENGTH = 60


class Refused(ValueError):
    """A draft that cannot be published as it is; the message says why and what to do."""


def slugify(title: str) -> str:
    """A file-name slug from a title: ASCII letters and digits joined by hyphens; "" when
    the title has none (a title in Chinese, say)."""
    ascii_text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:SLUG_LENGTH].rstrip("-")


def new_item(title: str, now: datetime, author: str) -> str:
    """A draft's text: its title, today's date, and the optional fields as comments."""
    title_line = yaml.safe_dump(
        {"title": title}, allow_unicode=True, width=1_000_000, default_flow_style=False
    )
    return (
        "---\n"
        f"{title_line}"
        f"date: {now.strftime(DATE_FORMAT)}  # set by `feedsvc publish` when it goes live\n"
        "tags: []  # a few words, like [tmall, luxury]\n"
        "# summary: a sentence or two for feed readers (else the first paragraph)\n"
        f"# author: {_comment(author)} (the default)\n"
        "# link: https://… (the story's own page, when it is published elsewhere)\n"
        "# image: https://… (a picture for feed readers)\n"
        "draft: true  # nothing is published until `feedsvc publish FILE`\n"
        "---\n"
        f"{PLACEHOLDER}"
    )


def _comment(text: str) -> str:
    """`text` on one comment line."""
    return " ".join(text.split())


def publish(data: bytes, path: str, settings: Settings, now: datetime) -> bytes:
    """The bytes of the draft `data` (the file at `path`, relative to the items folder)
    made live at `now`: its `draft:` lines removed and its `date:` set to `now` (to the
    minute), every other byte as it was. Refused when it is not a draft, has errors, or
    its front matter is not one field per line (flow style), where an edit by line
    cannot be made safely."""
    parsed = itemfile.parse_item(path, data, settings)
    errors = [p for p in parsed.problems if p.severity == "error"]
    if parsed.item is None or errors:
        first = errors[0] if errors else None
        where = f" (line {first.line})" if first and first.line else ""
        reason = f": {first.message}{where}" if first else ""
        raise Refused(f"it has errors{reason}; fix them first (`feedsvc check` lists them)")
    draft = parsed.item
    if not draft.draft:
        raise Refused("it is not a draft (no 'draft: true' in its front matter)")
    if itemfile.body_of(data).strip() == PLACEHOLDER.strip():
        raise Refused("its body is still the placeholder; write the story first")
    when = now.astimezone(settings.zone).replace(second=0, microsecond=0)
    published = _edited(data, when.strftime(DATE_FORMAT))
    _check(draft, itemfile.parse_item(path, published, settings).item, data, published, when)
    return published


_LINE_BREAK = re.compile(r"\r\n|\r|\n")
#: What PyYAML's reader refuses to read; replaced one for one (positions unchanged) only
#: to find where the fields are, never written.
_UNREADABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)


def _edited(data: bytes, date: str) -> bytes:
    bom = "\ufeff" if data.startswith(b"\xef\xbb\xbf") else ""
    text = data.decode("utf-8")[len(bom) :]
    start, end = _front_matter(text)
    front = text[start:end]
    root = yaml.compose(_UNREADABLE.sub(" ", front), Loader=yaml.SafeLoader)
    if not isinstance(root, yaml.MappingNode) or root.flow_style:
        raise Refused("its front matter is not one field per line; remove 'draft: true' "
                      "and set 'date:' by hand")  # fmt: skip
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement), in `front`
    dated = False
    drafts = []
    for key, value in root.value:
        if not isinstance(key, yaml.ScalarNode):
            continue
        if key.value == "draft":
            drafts.append((key, value))
        elif key.value == "date":
            edits.append(_new_date(front, value, date))
            dated = True
    for number, (key, value) in enumerate(drafts):
        line_start, line_end = _lines_of(front, key, value)
        # With no `date:` to set, the first draft line becomes one: the lines keep their
        # numbers.
        replacement = ""
        if not dated and number == 0:
            indent = front[line_start : key.start_mark.index]
            replacement = f"{indent}date: {date}{_line_break(front, line_end)}"
        edits.append((line_start, line_end, replacement))
    edits.sort(reverse=True)
    for (_, earlier_end, _), (later_start, _, _) in zip(edits[1:], edits, strict=False):
        if earlier_end > later_start:
            raise Refused("its 'draft:' and 'date:' fields share a line; edit it by hand")
    for edit_start, edit_end, replacement in edits:
        front = front[:edit_start] + replacement + front[edit_end:]
    return (bom + text[:start] + front + text[end:]).encode("utf-8")


def _front_matter(text: str) -> tuple[int, int]:
    """Where the front matter's lines are: from after the first `---` line to the start
    of the closing `---` line (as `itemfile` splits a file, with any kind of line break)."""
    position, opened = 0, None
    for match in _LINE_BREAK.finditer(text):
        line = text[position : match.start()].rstrip()
        if opened is None:
            if line != "---":
                break
            opened = match.end()
        elif line == "---":
            return opened, position
        position = match.end()
    else:
        if opened is not None and text[position:].rstrip() == "---":
            return opened, position
    raise Refused("its front matter cannot be found; edit it by hand")


def _new_date(front: str, value: yaml.Node, date: str) -> tuple[int, int, str]:
    """The edit that makes the value of a `date:` field `date`."""
    start, end = value.start_mark.index, value.end_mark.index
    if start == end:  # `date:` with nothing after it
        return start, end, f" {date}"
    replaced = front[start:end]
    # A value written over several lines (a block scalar) may end with the line break
    # before the next field: that break stays.
    break_at_end = _LINE_BREAK.search(replaced[-2:]) if replaced[-1:] in "\r\n" else None
    return start, end, date + (break_at_end[0] if break_at_end else "")


def _lines_of(front: str, key: yaml.Node, value: yaml.Node) -> tuple[int, int]:
    """From the start of the key's line to after the line break ending the value's line
    (or the end of the front matter); refused if anything but a comment shares them."""
    line_start = max(front.rfind("\n", 0, key.start_mark.index),
                     front.rfind("\r", 0, key.start_mark.index)) + 1  # fmt: skip
    value_end = max(value.end_mark.index, key.end_mark.index)
    following = _LINE_BREAK.search(front, value_end)
    line_end = following.end() if following else len(front)
    rest = front[value_end : following.start() if following else len(front)].strip()
    if front[line_start : key.start_mark.index].strip() or (rest and not rest.startswith("#")):
        raise Refused("its 'draft:' line holds more than that field; edit it by hand")
    return line_start, line_end


def _line_break(front: str, line_end: int) -> str:
    """The line break that ends at `line_end`, "" for none (the last line)."""
    if front[line_end - 2 : line_end] == "\r\n":
        return "\r\n"
    return front[line_end - 1 : line_end] if front[line_end - 1 : line_end] in ("\r", "\n") else ""


def _check(draft: Item, item: Item | None, before: bytes, after: bytes, when: datetime) -> None:
    """That the edit did what it says, and no more: the same item, live, dated `when`,
    with the same body. Anything else is refused rather than written."""
    same = ("category", "slug", "file_date", "title", "author", "tags", "summary", "link",
            "id", "image")  # fmt: skip
    if (
        item is None
        or item.draft
        or item.published != when
        or any(getattr(item, name) != getattr(draft, name) for name in same)
        or itemfile.body_of(after) != itemfile.body_of(before)
    ):
        raise Refused("it could not be edited safely; remove 'draft: true' and set 'date:' "
                      "by hand")  # fmt: skip
