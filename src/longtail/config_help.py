"""Every config key with its default, its allowed choices and its comment, for help texts.

Generated from :class:`longtail.config.Config` (its dataclasses, nested sections included) and
:data:`longtail.config.CHOICES`; the comments are those written beside each field in
``config.py``, read from its source (none when the source is not available). A key added to a
dataclass shows up here without any change to this module.
"""

from __future__ import annotations

import ast
import inspect
import io
import textwrap
import tokenize
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

import yaml

from longtail import config as config_module


@dataclass(frozen=True)
class ConfigKey:
    key: str  # dotted, as an override writes it: optim.lr
    default: Any
    choices: tuple[str, ...] | None
    comment: str  # the comment beside the field in config.py ("" when none)


def yaml_value(value: Any) -> str:
    """``value`` as an override would write it: ``0.1``, ``null``, ``true``, ``[160, 180]``."""
    text: str = yaml.safe_dump(value, default_flow_style=True, width=10**6)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _field_comments() -> tuple[dict[tuple[str, str], str], dict[str, str]]:
    """``{(class, field): comment}`` and ``{class: docstring's first line}`` from config.py."""
    try:
        source = inspect.getsource(config_module)
    except (OSError, TypeError):
        return {}, {}
    comments: dict[int, str] = {}  # line -> its comment's text
    code_lines: set[int] = set()  # lines holding code, not only a comment
    skip = {tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
        elif token.type not in skip:
            code_lines.update(range(token.start[0], token.end[0] + 1))
    by_field: dict[tuple[str, str], str] = {}
    docs: dict[str, str] = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        doc = ast.get_docstring(node)
        if doc:
            docs[node.name] = " ".join(doc.split("\n\n")[0].split()).replace("``", "`")
        previous = None  # the field above, whose comment a "(...)" line may continue
        for item in node.body:
            if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
                continue
            above: list[str] = []  # the comment-only lines right above the field
            line = item.lineno - 1
            while line in comments and line not in code_lines:
                above.insert(0, comments[line])
                line -= 1
            if above and above[0].startswith("(") and previous and line in comments:
                by_field[previous] = f"{by_field[previous]} {above.pop(0)}".strip()
            end = item.end_lineno or item.lineno
            beside = [comments[n] for n in range(item.lineno, end + 1) if n in comments]
            previous = (node.name, item.target.id)
            by_field[previous] = " ".join(part for part in (*above, *beside) if part)
    return by_field, docs


def config_keys() -> list[ConfigKey]:
    """Every leaf key of ``Config()``, in declaration order."""
    by_field, _ = _field_comments()
    keys: list[ConfigKey] = []

    def walk(node: Any, prefix: str) -> None:
        for f in fields(node):
            value = getattr(node, f.name)
            key = f"{prefix}{f.name}"
            if is_dataclass(value):
                walk(value, key + ".")
            else:
                comment = by_field.get((type(node).__name__, f.name), "")
                keys.append(ConfigKey(key, value, config_module.CHOICES.get(key), comment))

    walk(config_module.Config(), "")
    return keys


def section_docs() -> dict[str, str]:
    """``{section: its dataclass docstring's first paragraph}`` for the sections that have one."""
    _, docs = _field_comments()
    out = {}
    for f in fields(config_module.Config()):
        value = getattr(config_module.Config(), f.name)
        if is_dataclass(value) and type(value).__name__ in docs:
            out[f.name] = docs[type(value).__name__]
    return out


def format_config_keys(width: int = 100) -> str:
    """The keys as help text: ``key=default  {choices}`` lines, each comment indented below."""
    docs = section_docs()
    lines: list[str] = []
    section = None
    for item in config_keys():
        head = item.key.split(".")[0] if "." in item.key else ""
        if head != section:
            section = head
            title = f"{head}.*" if head else "top level"
            heading = f"{title}: {docs[head]}" if head in docs else f"{title}:"
            lines += textwrap.wrap(heading, width, subsequent_indent="    ")
        line = f"  {item.key}={yaml_value(item.default)}"
        if item.choices:
            line += f"  {{{', '.join(item.choices)}}}"
        lines.append(line)
        if item.comment and item.comment != " | ".join(item.choices or ()):  # not the choices again
            lines += textwrap.wrap(
                item.comment, width, initial_indent=" " * 6, subsequent_indent=" " * 6
            )
    return "\n".join(lines)
