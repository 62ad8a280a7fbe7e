"""Recipe files: YAML mappings that name each key once, and recipe inheritance (``base:``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from longtail.errors import LongtailError
from longtail.text_files import read_utf8_text


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names a key twice (PyYAML would keep the last silently)."""


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (two ``train:`` blocks)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DuplicateKeyError(
                    f"key '{key}' appears twice (lines {seen[key]} and {line}): keep one of them"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping (a recipe, a run's config.yaml), or one-line errors."""
    if not path.is_file():
        raise LongtailError(
            f"{what} {path} does not exist: pass a YAML file, e.g. recipes/demo.yaml"
        )
    text = read_utf8_text(  # a byte-order mark is read, not refused
        path, lambda n, b: f"{what} {path}:{n} is not UTF-8 text (byte 0x{b:02x}): save it as UTF-8"
    )
    try:
        loaded = yaml.load(text, Loader=UniqueKeyLoader) or {}  # noqa: S506
    except DuplicateKeyError as err:
        raise LongtailError(f"{what} {path}: {err}") from None
    except yaml.YAMLError as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        where = f" at line {line + 1}" if line is not None else ""
        raise LongtailError(f"{what} {path} is not valid YAML{where}: fix its syntax") from None
    if not isinstance(loaded, dict):
        raise LongtailError(f"{what} {path} must be a mapping of keys: see recipes/demo.yaml")
    return loaded


def recipe_layers(path: Path, _seen: tuple[Path, ...] = ()) -> list[tuple[str, dict[str, Any]]]:
    """A recipe and the recipes it inherits from, as merge layers, the farthest base first.

    ``base: other.yaml`` (a path relative to the recipe's own folder) inherits every key of that
    recipe; this recipe's keys then merge over it (mappings key by key, lists and values replaced).
    A base may have its own base. A missing base or a cycle is a one-line error.
    """
    mapping = read_yaml_mapping(path, "recipe")
    base = mapping.pop("base", None)
    if base is None:
        return [(f"recipe {path}", mapping)]
    if not isinstance(base, str):
        raise LongtailError(f"base in recipe {path} must be a path (e.g. base: ce_r100.yaml)")
    parent = (path.parent / base).resolve()
    if parent in _seen or parent == path.resolve():
        raise LongtailError(
            f"recipe {path} inherits from itself through base: {base}: break the cycle"
        )
    if not parent.is_file():
        raise LongtailError(
            f"base: {base} in recipe {path} does not exist ({parent}): the path is relative to"
            " the recipe's folder"
        )
    return [*recipe_layers(parent, (*_seen, path.resolve())), (f"recipe {path}", mapping)]
