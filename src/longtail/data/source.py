"""Where a run's images come from (``data.dataset``, ``data.root``): a dataset's reader, or a pack.

Everything above data/ asks its data questions of a :class:`DataSource` and never of the dataset's
name: which arrays or files a split holds, its statistics, the long-tailed subset a run trains on,
whether spare training images exist (for a balanced validation split or probe). A data pack
(``longtail pack``) is one more source: a pack of a whole split answers exactly as the dataset it
was made from; a pack of a recipe's subset holds that subset and nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from longtail.data.arrays import ImageArrays
from longtail.data.config import DataConfig
from longtail.data.pack import read_pack, read_pack_meta
from longtail.data.registry import dataset_stats, list_files, load_split
from longtail.data.subset import choose_indices, subset_fields
from longtail.errors import LongtailError

Listing = tuple[list[Path], np.ndarray, list[str]]  # (files, int64 labels [N], class names)


def is_pack(cfg: DataConfig) -> bool:
    """Whether ``cfg`` reads a data pack, whose images are those of the dataset it was made from."""
    return cfg.dataset == "pack"


class DataSource:
    """A dataset read by its registered reader (:mod:`longtail.data.registry`)."""

    def __init__(self, cfg: DataConfig) -> None:
        self.cfg = cfg

    @staticmethod
    def of(cfg: DataConfig) -> DataSource:
        """The source ``cfg`` names."""
        return PackSource(cfg) if is_pack(cfg) else DataSource(cfg)

    def list_file(self, split: str) -> str | None:
        """The list a split is read from, when the recipe names one (data.train_list, ...)."""
        c = self.cfg
        return {"train": c.train_list, "val": c.val_list, "test": c.test_list}.get(split)

    def arrays(self, split: str) -> ImageArrays:
        """One full split, decoded (through the cache when ``data.cache_dir`` is set)."""
        c = self.cfg
        return load_split(c.dataset, c.root, split,
                          cache_dir=Path(c.cache_dir) if c.cache_dir else None,
                          channels=c.channels, list_file=self.list_file(split),
                          image_size=c.image_size)  # fmt: skip

    def files(self, split: str, *, check_files: bool = True) -> Listing | None:
        """A split's image files, labels and classes without decoding; None for array data."""
        c = self.cfg
        return list_files(c.dataset, c.root, split, self.list_file(split), check_files=check_files)

    def has_published_val(self) -> bool:
        """Whether the data has its own validation split: a named ``data.val_list``, or a split
        list root holding ``val.txt``."""
        if self.cfg.dataset != "split_list":
            return False
        return (
            self.cfg.val_list is not None
            or (Path(self.cfg.root).expanduser() / "val.txt").is_file()
        )

    def holds_whole_split(self) -> bool:
        """Whether every training image is there (not only a subset's): spare images exist."""
        return True

    def stored_subset(self) -> dict[str, Any] | None:
        """The subset record when the source fixes it (known without reading labels), else None."""
        return None

    def subset(self, labels: np.ndarray, num_classes: int) -> dict[str, Any]:
        """The long-tailed subset this run trains on, as a record (lt_index.json)."""
        return self.stored_subset() or choose_indices(self.cfg, labels, num_classes)

    def stats(self, full: ImageArrays) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the full training split, in [0, 1] units."""
        return dataset_stats(full)


class PackSource(DataSource):
    """A data pack (:mod:`longtail.data.pack`): splits decoded from the file, the source's stats."""

    def __init__(self, cfg: DataConfig) -> None:
        super().__init__(cfg)
        self.meta = read_pack_meta(cfg.root)
        self.whole = bool(self.meta.get("subset", {}).get("whole"))  # ``pack --whole``

    def arrays(self, split: str) -> ImageArrays:
        return read_pack(self.cfg.root, split)

    def files(self, split: str, *, check_files: bool = True) -> Listing | None:
        return None  # a pack holds encoded images, not files

    def holds_whole_split(self) -> bool:
        return self.whole

    def stored_subset(self) -> dict[str, Any] | None:
        """A subset pack's record, checked against the subset the recipe asks for; its indices are
        into the pack's training split, which IS the subset (the source's are kept beside)."""
        if self.whole or self.cfg.index_file:
            return None
        stored = self.meta.get("subset", {})
        for name, value in subset_fields(self.cfg).items():
            if name in stored and stored[name] != value:
                raise LongtailError(
                    f"data pack {self.cfg.root} holds a subset with data.{name}={stored[name]},"
                    f" the recipe asks for {value}: rebuild the pack with 'longtail pack' from"
                    " this recipe"
                )
        record = dict(self.meta["lt_index"])
        record["source_indices"] = record["indices"]
        record["indices"] = list(range(record["total"]))
        return record

    def stats(self, full: ImageArrays) -> tuple[list[float], list[float]]:
        return list(self.meta["mean"]), list(self.meta["std"])  # the source's full split's
