"""Dataset readers: each turns one on-disk format into ImageArrays (split lists: a FileList)."""

from longtail.data.readers.cifar import read_cifar
from longtail.data.readers.idx import read_idx_pair, read_mnist_like
from longtail.data.readers.imagefolder import list_image_folder, read_image_folder
from longtail.data.readers.split_list import FileList, decode_file_list, read_split_list

__all__ = [
    "FileList",
    "decode_file_list",
    "list_image_folder",
    "read_cifar",
    "read_idx_pair",
    "read_image_folder",
    "read_mnist_like",
    "read_split_list",
]
