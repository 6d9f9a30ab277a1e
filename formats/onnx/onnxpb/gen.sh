#!/bin/sh
# Regenerates onnx.pb.go from onnx.proto. Needs protoc (Debian: protobuf-compiler)
# and protoc-gen-go at the version go.mod pins for google.golang.org/protobuf:
#   GOBIN=$HOME/go/bin go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
# The generated file is committed, so building the module never needs protoc.
set -eu
cd "$(dirname "$0")/../../.." # repository root: the .proto's registered path is formats/onnx/onnxpb/onnx.proto
protoc -I . --go_out=. --go_opt=paths=source_relative formats/onnx/onnxpb/onnx.proto
