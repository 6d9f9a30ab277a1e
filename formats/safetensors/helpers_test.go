package safetensors

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"

	"github.com/sorsa-convert/sorsa-convert/formats/dtype"
)

// spec is a test tensor whose element k has the value Start + Step*k,
// encoded in DType. Python oracles rebuild the same values with numpy.
type spec struct {
	Name  string  `json:"name"`
	DType DType   `json:"dtype"`
	Shape []int64 `json:"shape"`
	Start float64 `json:"start"`
	Step  float64 `json:"step"`
}

func (s spec) info() TensorInfo {
	return TensorInfo{Name: s.Name, DType: s.DType, Shape: s.Shape}
}

// value returns element k's value.
func (s spec) value(k int) float64 { return s.Start + s.Step*float64(k) }

// bytes encodes the tensor's elements.
func (s spec) bytes(t testing.TB) []byte {
	t.Helper()
	n := int(TensorInfo{Shape: s.Shape}.NumElements())
	size, ok := s.DType.Size()
	if !ok {
		t.Fatalf("spec %s: dtype %s has no byte size", s.Name, s.DType)
	}
	b := make([]byte, n*size)
	for k := range n {
		v := s.value(k)
		switch s.DType {
		case F32:
			binary.LittleEndian.PutUint32(b[4*k:], math.Float32bits(float32(v)))
		case F64:
			binary.LittleEndian.PutUint64(b[8*k:], math.Float64bits(v))
		case F16:
			binary.LittleEndian.PutUint16(b[2*k:], dtype.F16FromFloat64(v))
		case BF16:
			binary.LittleEndian.PutUint16(b[2*k:], dtype.BF16FromFloat64(v))
		case I64:
			binary.LittleEndian.PutUint64(b[8*k:], uint64(int64(v)))
		case I32:
			binary.LittleEndian.PutUint32(b[4*k:], uint32(int32(v)))
		case U8:
			b[k] = uint8(v)
		default:
			t.Fatalf("spec %s: no encoder for %s", s.Name, s.DType)
		}
	}
	return b
}

// writeSpecs writes a file holding specs, in order, with the Writer.
func writeSpecs(t testing.TB, specs []spec, md map[string]string) []byte {
	t.Helper()
	infos := make([]TensorInfo, len(specs))
	for i, s := range specs {
		infos[i] = s.info()
	}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, infos, md)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	for _, s := range specs {
		if err := w.WriteTensor(s.Name, s.bytes(t)); err != nil {
			t.Fatalf("WriteTensor(%s): %v", s.Name, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return buf.Bytes()
}

// rawFile assembles a file from a literal header and dataLen zero bytes of
// data, without padding the header.
func rawFile(header string, dataLen int) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, make([]byte, dataLen)...)
}

// mixedSpecs covers the dtypes the tool reads and writes, with sizes that
// leave tensors unaligned to test that nothing assumes alignment.
var mixedSpecs = []spec{
	{Name: "model.layers.0.self_attn.q_proj.weight", DType: F32, Shape: []int64{4, 5}, Start: -3, Step: 0.25},
	{Name: "model.layers.0.mlp.up_proj.weight", DType: F16, Shape: []int64{3, 7}, Start: -2, Step: 0.125},
	{Name: "model.norm.weight", DType: BF16, Shape: []int64{2, 2, 2}, Start: 1, Step: -0.5},
	{Name: "position_ids", DType: I64, Shape: []int64{5}, Start: -5, Step: 3},
	{Name: "mask", DType: U8, Shape: []int64{13}, Start: 7, Step: 1},
	{Name: "lm_head.weight", DType: F32, Shape: []int64{3, 2}, Start: 0.5, Step: 1},
}
