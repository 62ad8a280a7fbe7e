#!/usr/bin/env bash
# Prepare what a GPU run needs to carry (the device's working tree is capped at 64 MiB and has no
# registry): wheels missing from its image (Python 3.12, torch 2.11 with CUDA) into .whl/, and
# data packs into .gpu/. Both folders are git-ignored; name them in the device tool's `carry`.
#   bash scripts/gpu_prep.sh recipes/cifar10_lt/ce_r100.yaml [more recipes...]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl .gpu
for wheel in omegaconf==2.4.0 kornia==0.9.0 kornia-rs==0.2.0; do
  .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl "$wheel"
done
for recipe in "$@"; do
  name=$(basename "$(dirname "$recipe")")_$(basename "$recipe" .yaml)
  .venv/bin/longtail pack "$recipe" ".gpu/$name.npz"
done
du -sh .whl .gpu
