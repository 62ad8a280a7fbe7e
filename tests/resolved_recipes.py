"""Every recipe's resolved config as dotted keys that differ from the defaults.

``tests/golden/resolved_recipes.json`` holds them as they were when recipe inheritance (``base:``)
came in, so that rewriting recipes on a base provably changes no resolved value. After a deliberate
change of a recipe, rewrite it:  python tests/resolved_recipes.py  (from the repository root).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from longtail.config import Config, load_config, to_dict

GOLDEN = Path(__file__).parent / "golden" / "resolved_recipes.json"


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def train_recipes(root: Path = Path("recipes")) -> list[Path]:
    """Every recipe under ``root`` (study specs, which hold a ``study:`` key, left out)."""
    return [
        p
        for p in sorted(root.rglob("*.yaml"))
        if "study" not in (yaml.safe_load(p.read_text()) or {})
    ]


def resolved(path: Path) -> dict[str, Any]:
    """The recipe's resolved config, as the dotted keys whose value differs from the default."""
    cfg = load_config(path)
    # the defaults of the recipe's method: its strategy.* section's own
    defaults = _flat(to_dict(Config(strategy=type(cfg.strategy)())))
    defaults["strategy.name"] = "supervised"  # the method itself is what a recipe chose
    return {k: v for k, v in _flat(to_dict(cfg)).items() if defaults.get(k) != v}


if __name__ == "__main__":
    table = {str(p): resolved(p) for p in train_recipes()}
    GOLDEN.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(f"{len(table)} recipes -> {GOLDEN}")
