package onnx

import (
	"errors"
	"fmt"
)

// FormatError reports a model file (or one of its external data files) that
// is not valid ONNX or cannot be used as such: which file, which tensor and,
// where known, which byte offset.
type FormatError struct {
	// File is the model or external data file concerned, or "" for a model
	// decoded from memory.
	File string
	// Tensor names the tensor concerned, or is empty.
	Tensor string
	// Offset is the byte offset in File the problem concerns, or -1.
	Offset int64
	// Msg says what is wrong.
	Msg string
	// Err is an underlying cause callers may test with errors.Is, or nil.
	Err error
}

func (e *FormatError) Error() string {
	s := "onnx: "
	if e.File != "" {
		s += e.File + ": "
	}
	if e.Offset >= 0 {
		s += fmt.Sprintf("offset %d: ", e.Offset)
	}
	if e.Tensor != "" {
		s += fmt.Sprintf("tensor %q: ", e.Tensor)
	}
	switch {
	case e.Msg == "" && e.Err != nil:
		s += e.Err.Error()
	case e.Err != nil:
		s += e.Msg + ": " + e.Err.Error()
	default:
		s += e.Msg
	}
	return s
}

// Unwrap returns the underlying cause, if any.
func (e *FormatError) Unwrap() error { return e.Err }

var (
	// ErrCycle is the cause of a FormatError for a graph whose nodes depend
	// on each other in a cycle.
	ErrCycle = errors.New("graph has a cycle")
	// ErrUnsupportedType is returned for a tensor whose element type cannot
	// be decoded to float (only FLOAT, FLOAT16, BFLOAT16 and DOUBLE can).
	ErrUnsupportedType = errors.New("unsupported element type")
	// ErrNotFound is returned for a weight name the model does not define.
	ErrNotFound = errors.New("weight not found")
	// ErrNotTarget is returned when a weight cannot be rewritten as a SORSA
	// target; the error text says why.
	ErrNotTarget = errors.New("not a target")
)

func tensorErr(file, tensor, msg string, err error) *FormatError {
	return &FormatError{File: file, Tensor: tensor, Offset: -1, Msg: msg, Err: err}
}
