// The `flowgate:plugin/aggregator` world: `create`, `add`, `merge` and `finish` run the four
// functions given to Aggregator (flowgate.go has the types, `init` and the canonical-ABI
// helpers). The host assigns events to windows per key and keeps the accumulators; the plugin
// folds events into them and says what a window's result is.
package main

import "unsafe"

// Pane is a window whose result is due: the key it groups and its bounds.
type Pane struct {
	Key    []byte // the key, read only when HasKey
	HasKey bool   // false: the events have no key, which differs from an empty key
	Start  int64  // first millisecond in the window
	End    int64  // first millisecond after the window
}

var (
	aggCreate func() []byte
	aggAdd    func(acc []byte, e *Event) ([]byte, error)
	aggMerge  func(a, b []byte) ([]byte, bool)
	aggFinish func(acc []byte, p *Pane) ([]byte, error)
)

// Aggregator makes the plugin an aggregation over windows, on accumulators in an encoding of
// your own:
//   - create returns the accumulator of an empty window;
//   - add folds one event into acc and returns the accumulator (acc changed in place, or a new
//     slice). acc is a copy: when add fails, the accumulator stays as it was. Return
//     InvalidInput("why") for a row that cannot be added (it goes to the dead-letter topic),
//     Fatal("why") to fail the whole call;
//   - merge returns one accumulator holding what a and b hold, and true (session windows that
//     grow into each other); nil, or false, when they cannot merge: then session windows
//     cannot run;
//   - finish returns the output value of a window; an error fails the call.
//
// acc, a, b and the event are valid until the function returns: copy what you keep.
func Aggregator(
	create func() []byte,
	add func(acc []byte, e *Event) ([]byte, error),
	merge func(a, b []byte) ([]byte, bool),
	finish func(acc []byte, p *Pane) ([]byte, error),
) {
	aggCreate, aggAdd, aggMerge, aggFinish = create, add, merge, finish
}

//go:wasmexport create
func wasmCreate() int32 {
	startCall()
	out := area(8)
	acc := append([]byte{}, aggCreate()...)
	results = append(results, acc)
	putList(out, 0, addr(acc), len(acc))
	return addr(out)
}

// A list of byte strings (list<list<u8>>) as a result: one buffer and the records into it.
func putBytesList(out []byte, at int, items [][]byte) {
	total := 0
	for _, b := range items {
		total += len(b)
	}
	data := area(total)
	records := area(8 * len(items))
	n := 0
	for i, b := range items {
		copy(data[n:], b)
		putList(records, 8*i, addr(data)+int32(n), len(b))
		n += len(b)
	}
	putList(out, at, addr(records), len(items))
}

// overlaps: whether a and b share memory (within their capacities).
func overlaps(a, b []byte) bool {
	if cap(a) == 0 || cap(b) == 0 {
		return false
	}
	pa := uintptr(unsafe.Pointer(unsafe.SliceData(a)))
	pb := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return pa < pb+uintptr(cap(b)) && pb < pa+uintptr(cap(a))
}

var (
	accs  [][]byte // the call's accumulators, reused from call to call
	spare []byte   // what add gets: a copy of the row's accumulator
)

//go:wasmexport add
func wasmAdd(ptr int32) int32 {
	startCall()
	args := mem(ptr, 104)
	n := le.Uint32(args[4:])
	list := memOf[uint32](le.Uint32(args), 2*n)
	in := readBatch(args[8:96])
	slots := memOf[uint32](le.Uint32(args[96:]), le.Uint32(args[100:]))
	out := area(20)
	fail := func(err error) int32 {
		endCall()
		out[0] = 1
		failure(out, 4, err)
		return addr(out)
	}
	if len(slots) != in.rows {
		return fail(Fatal("host sent slots that do not match the batch"))
	}
	accs = accs[:0]
	for i := uint32(0); i < n; i++ {
		accs = append(accs, mem(int32(list[2*i]), int32(list[2*i+1])))
	}
	type rowFailure struct {
		row uint32
		err error
	}
	var fails []rowFailure
	var e Event
	for row := 0; row < in.rows; row++ {
		s := slots[row]
		if s >= n {
			return fail(Fatal("host sent slots that do not match the batch"))
		}
		in.next(row, &e)
		spare = append(spare[:0], accs[s]...)
		got, err := aggAdd(spare, &e)
		if err != nil {
			if isFatal(err) {
				return fail(err)
			}
			fails = append(fails, rowFailure{uint32(row), err})
			continue
		}
		// The old accumulator becomes the next copy's buffer, unless add returned new memory.
		old := accs[s]
		accs[s] = got
		if overlaps(got, spare) {
			spare = old
		}
	}
	// Copied into the results before the arena (where the accumulators came in) is reused.
	putBytesList(out, 4, accs)
	clear(accs)
	failures := area(16 * len(fails))
	for i, f := range fails {
		le.PutUint32(failures[i*16:], f.row)
		failure(failures[i*16:], 4, f.err)
	}
	putList(out, 12, addr(failures), len(fails))
	if overlaps(spare, arena[:]) {
		spare = nil
	}
	endCall()
	return addr(out)
}

//go:wasmexport merge
func wasmMerge(aPtr, aLen, bPtr, bLen int32) int32 {
	startCall()
	out := area(12)
	if aggMerge != nil {
		if m, ok := aggMerge(mem(aPtr, aLen), mem(bPtr, bLen)); ok {
			m = append([]byte{}, m...)
			results = append(results, m)
			out[0] = 1
			putList(out, 4, addr(m), len(m))
		}
	}
	endCall()
	return addr(out)
}

//go:wasmexport finish
func wasmFinish(ptr, n int32) int32 {
	startCall()
	panes := mem(ptr, 40*n)
	values := make([][]byte, 0, n)
	out := area(16)
	for i := 0; i < int(n); i++ {
		r := panes[40*i:]
		p := Pane{HasKey: r[0] != 0, Start: int64(le.Uint64(r[16:])), End: int64(le.Uint64(r[24:]))}
		if p.HasKey {
			p.Key = mem(int32(le.Uint32(r[4:])), int32(le.Uint32(r[8:])))
		}
		v, err := aggFinish(mem(int32(le.Uint32(r[32:])), int32(le.Uint32(r[36:]))), &p)
		if err != nil {
			endCall()
			out[0] = 1
			failure(out, 4, err)
			return addr(out)
		}
		values = append(values, v)
	}
	putBytesList(out, 4, values)
	endCall()
	return addr(out)
}
