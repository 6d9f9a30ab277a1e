package safetensors

import (
	"errors"
	"fmt"
)

// FormatError reports a file that is not a valid safetensors file: where the
// problem is and which tensor it concerns.
type FormatError struct {
	// Offset is the file position (from the start of the file) at, or just
	// before, the offending bytes: 0 for the length prefix, 8+i for byte i
	// of the JSON header, DataOffset()+begin for tensor data.
	Offset int64
	// Tensor names the tensor concerned, or is empty.
	Tensor string
	// Msg says what is wrong.
	Msg string
	// Err is an underlying cause callers may test with errors.Is (for
	// instance ErrUnknownDType), or nil.
	Err error
}

// Error formats the problem with its offset and tensor.
func (e *FormatError) Error() string {
	if e.Tensor != "" {
		return fmt.Sprintf("safetensors: offset %d: tensor %q: %s", e.Offset, e.Tensor, e.Msg)
	}
	return fmt.Sprintf("safetensors: offset %d: %s", e.Offset, e.Msg)
}

// Unwrap returns the underlying cause, if any.
func (e *FormatError) Unwrap() error { return e.Err }

var (
	// ErrUnknownDType is the cause of a FormatError for a tensor whose dtype
	// this package does not know: its size cannot be checked, so the file
	// is refused rather than half read.
	ErrUnknownDType = errors.New("unknown dtype")
	// ErrTensorNotFound is returned for a tensor name that is not in the file.
	ErrTensorNotFound = errors.New("tensor not found")
)

// MaxHeaderSize is the largest JSON header the reader accepts, as in the
// reference implementation; a larger length is refused before any
// allocation.
const MaxHeaderSize = 100_000_000
