//go:build amd64 && !purego

package dtype

import "golang.org/x/sys/cpu"

// haveSIMD reports whether the vector codecs of simd_amd64.s can run.
var haveSIMD = cpu.X86.HasAVX2 && cpu.X86.HasF16C

// The vector codecs (simd_amd64.s). Each converts whole groups of 8 from
// the start of src and returns how many elements it did: the decoders do
// them all, the encoders stop before a group holding a NaN, which the
// scalar code then handles.

//go:noescape
func encF16(dst *byte, src *float64, n int) int

//go:noescape
func encBF16(dst *byte, src *float64, n int) int

//go:noescape
func decF16(dst *float64, src *byte, n int) int

//go:noescape
func decF16F32(dst *float32, src *byte, n int) int

//go:noescape
func decBF16(dst *float64, src *byte, n int) int
