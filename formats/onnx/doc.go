// Package onnx reads and writes ONNX models (ModelProto, with external data)
// losslessly, finds the weights SORSA can split, rewrites them in place, and
// builds or folds back the adapter-augmented training graph.
//
// Weights are exchanged in PyTorch's orientation (out × in), whatever the
// graph stores. Element codecs come from formats/dtype; this package imports
// no other format package and not surgery.
package onnx
