"""Every config key with its default, its allowed choices and its comment, for help texts.

Generated from :class:`longtail.config.Config` (its dataclasses, nested sections included), every
registered method's ``strategy.*`` dataclass, and :func:`longtail.config.choices`; the comments
are those written beside each field, read from the source of the module that defines its
dataclass (none when the source is not available). A key added to a dataclass, or a method
registered, shows up here without any change to this module.
"""

from __future__ import annotations

import ast
import inspect
import io
import sys
import textwrap
import tokenize
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

import yaml

from longtail import config as config_module
from longtail.strategies.registry import methods


@dataclass(frozen=True)
class ConfigKey:
    key: str  # dotted, as an override writes it: optim.lr
    default: Any
    choices: tuple[str, ...] | None
    comment: str  # the comment beside the field in its dataclass ("" when none)
    group: str = ""  # the heading it is listed under: its section, or strategy.name=<method>


def yaml_value(value: Any) -> str:
    """``value`` as an override would write it: ``0.1``, ``null``, ``true``, ``[160, 180]``."""
    text: str = yaml.safe_dump(value, default_flow_style=True, width=10**6)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _field_comments(module: Any) -> tuple[dict[tuple[str, str], str], dict[str, str]]:
    """``{(class, field): comment}`` and ``{class: docstring's first line}`` from ``module``."""
    try:
        source = inspect.getsource(module)
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


def _comment(cls: type, name: str) -> str:
    """The comment of field ``name`` of dataclass ``cls``, from the class that declares it."""
    for klass in cls.__mro__:
        by_field, _ = _field_comments(sys.modules[klass.__module__])
        if (klass.__name__, name) in by_field:
            return by_field[(klass.__name__, name)]
    return ""


def _docstring(cls: type) -> str:
    _, docs = _field_comments(sys.modules[cls.__module__])
    return docs.get(cls.__name__, "")


def config_keys() -> list[ConfigKey]:
    """Every leaf key of ``Config()`` in declaration order, then each method's ``strategy.*``."""
    allowed = config_module.choices()
    keys: list[ConfigKey] = []

    def walk(node: Any, prefix: str, group: str | None = None) -> None:
        for f in fields(node):
            value = getattr(node, f.name)
            key = f"{prefix}{f.name}"
            if is_dataclass(value):
                walk(value, key + ".")
            else:
                head = group if group is not None else prefix.split(".")[0]
                comment = _comment(type(node), f.name)
                keys.append(ConfigKey(key, value, allowed.get(key), comment, head))

    walk(config_module.Config(), "")
    for name, method in methods().items():
        section = method.config_class()
        own = [f for f in fields(section) if f.name != "name"]
        for f in own:
            key = f"strategy.{f.name}"
            comment = _comment(type(section), f.name)
            options = method.choices.get(f.name)
            keys.append(ConfigKey(key, getattr(section, f.name), options, comment,
                                  f"strategy.name={name}"))  # fmt: skip
    return keys


def section_docs() -> dict[str, str]:
    """``{group: its dataclass docstring's first paragraph}`` for the groups that have one."""
    out = {}
    for f in fields(config_module.Config()):
        value = getattr(config_module.Config(), f.name)
        if is_dataclass(value) and _docstring(type(value)):
            out[f.name] = _docstring(type(value))
    for name, method in methods().items():
        doc = _docstring(method.config_class)
        if doc:
            out[f"strategy.name={name}"] = doc
    return out


def format_config_keys(width: int = 100) -> str:
    """The keys as help text: ``key=default  {choices}`` lines, each comment indented below."""
    docs = section_docs()
    lines: list[str] = []
    section = None
    for item in config_keys():
        head = item.group
        if head != section:
            section = head
            title = (f"strategy.* of {head}" if head.startswith("strategy.name=")
                     else f"{head}.*" if head else "top level")  # fmt: skip
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
