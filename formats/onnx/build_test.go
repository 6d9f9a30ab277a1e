package onnx

import (
	"encoding/binary"
	"math"
	"math/rand/v2"

	"google.golang.org/protobuf/proto"

	"github.com/sorsa-convert/sorsa-convert/formats/dtype"
	pb "github.com/sorsa-convert/sorsa-convert/formats/onnx/onnxpb"
)

// Small builders for hand-made test models.

func floatTensor(name string, dt int32, dims []int64, v []float64, place Place) *pb.TensorProto {
	t := &pb.TensorProto{Name: proto.String(name), DataType: proto.Int32(dt), Dims: dims}
	k, _ := floatKind(dt)
	if place == Typed {
		switch k {
		case dtype.F32:
			t.FloatData = make([]float32, len(v))
			for i, x := range v {
				t.FloatData[i] = float32(x)
			}
		case dtype.F64:
			t.DoubleData = append([]float64{}, v...)
		case dtype.F16:
			for _, x := range v {
				t.Int32Data = append(t.Int32Data, int32(dtype.F16FromFloat64(x)))
			}
		case dtype.BF16:
			for _, x := range v {
				t.Int32Data = append(t.Int32Data, int32(dtype.BF16FromFloat64(x)))
			}
		}
		return t
	}
	t.RawData = make([]byte, len(v)*k.Size())
	dtype.Encode(k, t.RawData, v)
	return t
}

func f32Init(name string, dims []int64, v []float64) *pb.TensorProto {
	return floatTensor(name, typeFloat, dims, v, Raw)
}

func int64Init(name string, v ...int64) *pb.TensorProto {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(x))
	}
	return &pb.TensorProto{Name: proto.String(name), DataType: proto.Int32(int32(pb.TensorProto_INT64)), Dims: []int64{int64(len(v))}, RawData: b}
}

func node(op, name string, in, out []string, attrs ...*pb.AttributeProto) *pb.NodeProto {
	return &pb.NodeProto{OpType: proto.String(op), Name: proto.String(name), Input: in, Output: out, Attribute: attrs}
}

func attrI(name string, v int64) *pb.AttributeProto {
	return &pb.AttributeProto{Name: proto.String(name), Type: pb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

func attrF(name string, v float32) *pb.AttributeProto {
	return &pb.AttributeProto{Name: proto.String(name), Type: pb.AttributeProto_FLOAT.Enum(), F: proto.Float32(v)}
}

func attrInts(name string, v ...int64) *pb.AttributeProto {
	return &pb.AttributeProto{Name: proto.String(name), Type: pb.AttributeProto_INTS.Enum(), Ints: v}
}

func attrT(name string, t *pb.TensorProto) *pb.AttributeProto {
	return &pb.AttributeProto{Name: proto.String(name), Type: pb.AttributeProto_TENSOR.Enum(), T: t}
}

func attrG(name string, g *pb.GraphProto) *pb.AttributeProto {
	return &pb.AttributeProto{Name: proto.String(name), Type: pb.AttributeProto_GRAPH.Enum(), G: g}
}

// valueInfo declares a tensor value; a negative dim becomes a symbolic one.
func valueInfo(name string, elem int32, dims ...int64) *pb.ValueInfoProto {
	shape := &pb.TensorShapeProto{}
	for _, d := range dims {
		if d < 0 {
			shape.Dim = append(shape.Dim, &pb.TensorShapeProto_Dimension{Value: &pb.TensorShapeProto_Dimension_DimParam{DimParam: "n"}})
		} else {
			shape.Dim = append(shape.Dim, &pb.TensorShapeProto_Dimension{Value: &pb.TensorShapeProto_Dimension_DimValue{DimValue: d}})
		}
	}
	return &pb.ValueInfoProto{Name: proto.String(name), Type: &pb.TypeProto{Value: &pb.TypeProto_TensorType{
		TensorType: &pb.TypeProto_Tensor{ElemType: proto.Int32(elem), Shape: shape}}}}
}

func newModel(g *pb.GraphProto, opset int64) *Model {
	return &Model{Proto: &pb.ModelProto{
		IrVersion:    proto.Int64(8),
		ProducerName: proto.String("sorsa-convert test"),
		OpsetImport:  []*pb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(opset)}},
		Graph:        g,
	}}
}

// randValues returns n values uniform in [-1, 1) from a seeded source.
func randValues(seed uint64, n int) []float64 {
	r := rand.New(rand.NewPCG(seed, 7))
	v := make([]float64, n)
	for i := range v {
		v[i] = 2*r.Float64() - 1
	}
	return v
}

func randFloat32s(seed uint64, n int) []float32 {
	v := randValues(seed, n)
	out := make([]float32, n)
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// matmulT computes y = x·wᵀ (x: rows × in, w: out × in) in float64.
func matmulT(x []float32, rows, in int, w []float64, out int, scale float64) []float64 {
	y := make([]float64, rows*out)
	for r := 0; r < rows; r++ {
		for o := 0; o < out; o++ {
			s := 0.0
			for k := 0; k < in; k++ {
				s += float64(x[r*in+k]) * w[o*in+k]
			}
			y[r*out+o] = scale * s
		}
	}
	return y
}

func maxAbsDiff(a []float32, b []float64) float64 {
	d := 0.0
	if len(a) != len(b) {
		return math.Inf(1)
	}
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i])-b[i]))
	}
	return d
}
