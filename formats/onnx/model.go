package onnx

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"google.golang.org/protobuf/proto"

	pb "github.com/sorsa-convert/sorsa-convert/formats/onnx/onnxpb"
)

// MaxProtoSize is the largest serialized model ONNX Runtime and the onnx
// tools can parse (the C++ protobuf limit, 2 GiB − 1). Larger models must
// keep weights in external data.
const MaxProtoSize = 1<<31 - 1

// Model is a decoded ONNX model: the protobuf message plus what is needed
// to reach its external data.
type Model struct {
	// Proto is the whole model. Fields this package does not know are kept
	// in it and written back unchanged.
	Proto *pb.ModelProto
	// Dir is the folder external data locations are relative to: the model
	// file's folder for ReadFile, "" for Decode (external data then cannot
	// be read until Dir is set).
	Dir string
	// File is the model file's path, for messages; "" for Decode.
	File string

	// mu guards staged, scratch and scratchEnd, so that one weight can be
	// read while another is replaced.
	mu         sync.Mutex
	staged     map[*pb.TensorProto]span // replaced elements of external tensors, in scratch
	scratch    *os.File
	scratchEnd int64
}

// span is a byte range of a file.
type span struct{ off, n int64 }

// Decode parses a serialized ModelProto. It refuses bytes that are not
// protobuf, and protobuf that has no graph or IR version (any byte string
// that happens to parse as a message of unknown fields would otherwise pass).
func Decode(data []byte) (*Model, error) {
	return decode(data, "")
}

func decode(data []byte, file string) (*Model, error) {
	mp := &pb.ModelProto{}
	if err := proto.Unmarshal(data, mp); err != nil {
		return nil, &FormatError{File: file, Offset: -1, Msg: "not an ONNX model (protobuf)", Err: err}
	}
	if mp.IrVersion == nil || mp.GetIrVersion() <= 0 {
		return nil, &FormatError{File: file, Offset: -1, Msg: "not an ONNX model: no IR version"}
	}
	if mp.GetGraph() == nil {
		return nil, &FormatError{File: file, Offset: -1, Msg: "not an ONNX model: no graph"}
	}
	return &Model{Proto: mp, File: file}, nil
}

// ReadFile reads and decodes the model at path. External data stays on
// disk, next to the model, until a tensor's elements are asked for.
func ReadFile(path string) (*Model, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("onnx: %w", err)
	}
	m, err := decode(data, path)
	if err != nil {
		return nil, err
	}
	m.Dir = filepath.Dir(path)
	return m, nil
}

// Encode serializes the model. Tensors kept in external data stay there
// (their references point into Dir); replaced elements of external tensors
// are only written by WriteFile, so Encode refuses a model that has any.
func (m *Model) Encode() ([]byte, error) {
	if len(m.staged) > 0 {
		return nil, errors.New("onnx: external tensors were replaced; use WriteFile to write their data")
	}
	if n := proto.Size(m.Proto); n > MaxProtoSize {
		return nil, fmt.Errorf("onnx: model would take %d bytes, over the 2 GiB protobuf limit; write it with external data", n)
	}
	return proto.Marshal(m.Proto)
}

// Close releases the scratch file holding replaced external data. The model
// must not be written after Close.
func (m *Model) Close() error {
	if m.scratch == nil {
		return nil
	}
	name := m.scratch.Name()
	err := m.scratch.Close()
	if rerr := os.Remove(name); err == nil {
		err = rerr
	}
	m.scratch, m.staged, m.scratchEnd = nil, nil, 0
	return err
}

// stageExternal keeps the new elements b of external tensor t in the
// scratch file (so that replacing many large weights does not hold them all
// in memory) until the model is written.
func (m *Model) stageExternal(t *pb.TensorProto, b []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.scratch == nil {
		f, err := os.CreateTemp("", "sorsa-onnx-*.data")
		if err != nil {
			return fmt.Errorf("onnx: scratch file for external data: %w", err)
		}
		m.scratch, m.staged = f, map[*pb.TensorProto]span{}
	}
	if _, err := m.scratch.WriteAt(b, m.scratchEnd); err != nil {
		return fmt.Errorf("onnx: tensor %q: scratch file: %w", t.GetName(), err)
	}
	m.staged[t] = span{m.scratchEnd, int64(len(b))}
	m.scratchEnd += int64(len(b))
	return nil
}
