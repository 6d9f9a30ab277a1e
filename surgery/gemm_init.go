package surgery

func init() {
	k32, k64 := archKernels()
	kernel32, kernel64 = k32[0], k64[0]
	// The fastest kernel at most 16 wide, if it is narrower than the
	// default.
	for _, k := range k32 {
		if k.nr <= 16 && k.nr < kernel32.nr {
			kernel32Narrow = k
			break
		}
	}
}
