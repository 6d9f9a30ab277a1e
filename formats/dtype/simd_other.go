//go:build !amd64 || purego

package dtype

const haveSIMD = false

func encF16(dst *byte, src *float64, n int) int    { return 0 }
func encBF16(dst *byte, src *float64, n int) int   { return 0 }
func decF16(dst *float64, src *byte, n int) int    { return 0 }
func decF16F32(dst *float32, src *byte, n int) int { return 0 }
func decBF16(dst *float64, src *byte, n int) int   { return 0 }
