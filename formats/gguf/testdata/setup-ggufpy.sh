#!/bin/sh
# Installs llama.cpp's gguf-py (and the vocab-only GGUF files of its source
# tree) offline from the node-llama-cpp npm package, for the gguf package's
# oracle tests.
#
# Usage: setup-ggufpy.sh DIR
# Afterwards:
#   export SORSA_GGUF_PY=DIR/llama.cpp-src/gguf-py
# (the vocab files are found at DIR/llama.cpp-src/models). Needs npm, git and
# Debian's /usr/bin/python3 with python3-numpy. Idempotent.
set -eu
dir=${1:?usage: setup-ggufpy.sh DIR}
mkdir -p "$dir"
cd "$dir"
if [ ! -f node_modules/node-llama-cpp/llama/gitRelease.bundle ]; then
	# --ignore-scripts: only the bundled source is needed, no binaries or builds.
	npm i -E --no-audit --no-fund --ignore-scripts node-llama-cpp@3.21.1 >/dev/null
fi
if [ ! -d llama.cpp-src/gguf-py ]; then
	git -c advice.detachedHead=false clone -q node_modules/node-llama-cpp/llama/gitRelease.bundle llama.cpp-src
fi
PYTHONPATH=llama.cpp-src/gguf-py /usr/bin/python3 -c 'import gguf, numpy'
echo "SORSA_GGUF_PY=$(pwd)/llama.cpp-src/gguf-py"
