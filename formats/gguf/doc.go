// Package gguf reads and writes llama.cpp's GGUF model files (versions 2 and
// 3, little-endian) and holds the ggml block codecs (F32, F16, BF16, the
// legacy 32-element quants and the K-quants) keyed by ggml type.
//
// It owns the file layout, the metadata values and the ggml type table; it
// imports formats/dtype for F16/BF16 and no other format package.
//
// The layout follows ggml's gguf.cpp: a header with metadata key-value pairs
// and tensor infos, padding to the alignment, then each tensor's data padded
// to the alignment, tensors contiguous in info order. Tensor data is read
// lazily through an io.ReaderAt, so opening a large model costs only its
// header.
//
// The codecs reproduce ggml's reference C code bit for bit (see quant.go):
// Dequantize and Quantize (quantize_row_*_ref, no importance matrix) for
// F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and Q2_K–Q6_K.
package gguf
