package onnx

import (
	"strconv"
	"testing"
)

// bigLinear is a model with one 1024 × 1024 MatMul weight of type dt.
func bigLinear(dt int32) *Model {
	m := linearsModel()
	m.Proto.Graph.Initializer[0] = floatTensor("W_mm", dt, []int64{1024, 1024}, randValues(1, 1024*1024), Raw)
	return m
}

func BenchmarkDecode(b *testing.B) {
	data, err := bigLinear(typeFloat).Encode()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWeightF16(b *testing.B) {
	m := bigLinear(typeFloat16)
	b.SetBytes(2 << 20)
	for b.Loop() {
		if _, _, err := m.Weight("W_mm"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReplaceWeightBF16(b *testing.B) {
	m := bigLinear(typeBFloat16)
	w := randValues(2, 1024*1024)
	b.SetBytes(2 << 20)
	for b.Loop() {
		if err := m.ReplaceWeight("W_mm", w); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTargets(b *testing.B) {
	m := linearsModel()
	for i := 0; i < 200; i++ { // a deeper graph: many more nodes to index
		m.Proto.Graph.Node = append(m.Proto.Graph.Node, node("Relu", "", []string{"Y1"}, []string{"relu" + strconv.Itoa(i)}))
	}
	for b.Loop() {
		if _, err := Targets(m); err != nil {
			b.Fatal(err)
		}
	}
}
