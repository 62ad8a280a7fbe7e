"""The package's layers: the building blocks never import the trainer that assembles them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "longtail"
# below train/: what a user imports on its own (a loss, a sampler, a model, a strategy)
LOWER = ["data", "eval", "losses", "models", "optim", "strategies"]
LOWER_MODULES = ["runtime.py", "run_folder.py", "dist.py", "config.py", "io.py", "errors.py",
                 "run_sections.py", "recipe_files.py"]  # fmt: skip


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; ``from . import x`` resolved)."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            if node.level:
                pytest.fail(f"{path}: relative import; the package imports absolutely")
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def _lower_files() -> list[Path]:
    files = [p for d in LOWER for p in sorted((PACKAGE / d).rglob("*.py"))]
    return files + [PACKAGE / m for m in LOWER_MODULES]


@pytest.mark.parametrize("path", _lower_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_lower_layers_never_import_train(path: Path) -> None:
    upward = sorted(
        n for n in _imports(path) if n == "longtail.train" or n.startswith("longtail.train.")
    )
    assert not upward, (
        f"{path.relative_to(PACKAGE)} imports {upward[0]}: move what it needs below train/"
    )


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from longtail.train import runtime\nimport longtail.train.loop\n")
    assert {"longtail.train", "longtail.train.runtime", "longtail.train.loop"} <= _imports(bad)


def _method_modules() -> dict[str, str]:
    """``{module name: method name}`` of every registered method."""
    from longtail.strategies.registry import methods

    return {cls.__module__: name for name, cls in methods().items()}


def test_every_method_is_its_own_module() -> None:
    modules = _method_modules()
    assert len(modules) == len(set(modules.values())) >= 7, modules
    assert {
        "supervised",
        "hybrid",
        "kcl",
        "moco",
        "simclr",
        "supcon",
        "simsiam",
        "decoupled",
    } <= set(modules.values())


@pytest.mark.parametrize("module", sorted(_method_modules()))
def test_methods_never_import_each_other(module: str) -> None:
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    others = set(_method_modules()) - {module}
    imported = sorted(
        n for n in _imports(path) if any(n == o or n.startswith(o + ".") for o in others)
    )
    assert not imported, (
        f"{path.relative_to(PACKAGE)} imports the method module {imported[0]}: move what both"
        " use into a shared module (a network into models/, a loss into losses/, a step into a"
        " strategies module that registers no method)"
    )


def test_nothing_outside_the_registry_names_a_method() -> None:
    """train/ and config.py look methods up by name; they never import one."""
    modules = set(_method_modules())
    for path in [*sorted((PACKAGE / "train").rglob("*.py")), PACKAGE / "config.py"]:
        imported = sorted(n for n in _imports(path) if any(n.startswith(m) for m in modules))
        assert not imported, f"{path.relative_to(PACKAGE)} imports {imported[0]}"


# data/ answers the data questions alone: what it may import besides itself
DATA_MAY_IMPORT = ("longtail.data", "longtail.errors", "longtail.io", "longtail.launch",
                   "longtail.text_files")  # fmt: skip


@pytest.mark.parametrize(
    "path", sorted((PACKAGE / "data").rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_data_imports_only_data_and_utilities(path: Path) -> None:
    """The subset rule, packs and seeds live in data/: it never asks the run's config, a model,
    a method or the trainer (a data question never climbs back up)."""
    upward = sorted(
        n for n in _imports(path)
        if n.startswith("longtail") and not n.startswith(DATA_MAY_IMPORT)
    )  # fmt: skip
    assert not upward, f"{path.relative_to(PACKAGE)} imports {upward[0]}: keep data/ self-contained"


def test_no_dataset_name_decides_outside_data() -> None:
    """Outside data/, no module branches on the pack's dataset name: it asks a DataSource."""
    for path in sorted(PACKAGE.rglob("*.py")):
        if (PACKAGE / "data") in path.parents:
            continue
        text = path.read_text()
        assert 'dataset == "pack"' not in text and 'dataset != "pack"' not in text, (
            f"{path.relative_to(PACKAGE)} branches on data.dataset == 'pack': ask"
            " longtail.data.source.DataSource instead"
        )
