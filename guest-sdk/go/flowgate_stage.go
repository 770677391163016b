// The `flowgate:plugin/stage` world: `on-event` and `on-batch` run the one process function
// (flowgate.go has the types, `init` and the canonical-ABI helpers).
package main

var stageProcess func(e *Event, emit func(value []byte)) error

// Stage makes `p` the plugin. p calls emit(value) for an output that keeps the input's key,
// time and headers, or EmitEvent for a whole event of its own.
func Stage(p func(e *Event, emit func(value []byte)) error) { stageProcess = p }

// EmitEvent outputs a whole event from inside a process function: its key (none unless
// HasKey), value, timestamp and headers, copied as they are now. To add a header to the
// input's:
//
//	o := *e
//	o.Headers = append(append([]Header(nil), e.Headers...), Header{"route", []byte("json")})
//	EmitEvent(o)
func EmitEvent(o Event) {
	if current == nil {
		panic("flowgate: EmitEvent called outside a process function; call it while process runs")
	}
	outs.add(&o, o.Value, currentRow)
}

// --- outputs --------------------------------------------------------------------------------

// outputs are a call's output events in columns, reused from call to call: the host has read
// the last call's before the next one starts.
type outputs struct {
	values, keys, names, hvalues column
	hasKey                       []byte
	stamps                       []int64
	headerEnds, origins          []uint32
}

var (
	outs       outputs
	current    *Event // the input while process runs, else nil
	currentRow uint32
	emitFn     = func(v []byte) { outs.add(current, v, currentRow) }
)

func (o *outputs) reset() {
	o.values.truncate(0)
	o.keys.truncate(0)
	o.names.truncate(0)
	o.hvalues.truncate(0)
	o.hasKey, o.stamps = o.hasKey[:0], o.stamps[:0]
	o.headerEnds, o.origins = o.headerEnds[:0], o.origins[:0]
}

// add copies an output event (its value given apart, for emit) into the columns.
func (o *outputs) add(e *Event, value []byte, origin uint32) {
	o.values.push(value)
	if e.HasKey {
		o.keys.push(e.Key)
		o.hasKey = append(o.hasKey, 1)
	} else {
		o.keys.push(nil)
		o.hasKey = append(o.hasKey, 0)
	}
	o.stamps = append(o.stamps, e.Timestamp)
	for i := range e.Headers {
		o.names.pushString(e.Headers[i].Name)
		o.hvalues.push(e.Headers[i].Value)
	}
	o.headerEnds = append(o.headerEnds, uint32(len(o.names.ends)))
	o.origins = append(o.origins, origin)
}

// rollback drops the outputs after the first n (and their headers): a failing row's.
func (o *outputs) rollback(n int) {
	h := 0
	if n > 0 {
		h = int(o.headerEnds[n-1])
	}
	o.values.truncate(n)
	o.keys.truncate(n)
	o.names.truncate(h)
	o.hvalues.truncate(h)
	o.hasKey, o.stamps = o.hasKey[:n], o.stamps[:n]
	o.headerEnds, o.origins = o.headerEnds[:n], o.origins[:n]
}

// run calls process on the input `e`, row `row`.
func run(e *Event, row int) error {
	current, currentRow = e, uint32(row)
	err := stageProcess(e, emitFn)
	current = nil
	return err
}

// --- on-event -------------------------------------------------------------------------------

var (
	eventRecords  []uint64 // list<event>: 40 bytes each, 8-aligned
	headerRecords []uint32 // list<header>: 16 bytes each
)

//go:wasmexport on-event
func wasmOnEvent(keyTag, keyPtr, keyLen, valPtr, valLen int32, ts int64, hPtr, hLen int32) int32 {
	startCall()
	outs.reset()
	e := readEvent(keyTag, keyPtr, keyLen, valPtr, valLen, ts, hPtr, hLen)
	err := run(e, 0)
	endCall()
	if err != nil {
		return errResult(16, err)
	}
	out := area(16)
	// The output events, pointing into the columns.
	o := &outs
	n := len(o.origins)
	if cap(eventRecords) < 5*n {
		eventRecords = make([]uint64, 5*n)
	}
	if cap(headerRecords) < 4*len(o.names.ends) {
		headerRecords = make([]uint32, 4*len(o.names.ends))
	}
	events := bytesOf(eventRecords, 40*n)
	hdrs := bytesOf(headerRecords, 16*len(o.names.ends))
	for i := range o.names.ends {
		putCell(hdrs, 16*i, &o.names, i)
		putCell(hdrs, 16*i+8, &o.hvalues, i)
	}
	h := 0
	for i := 0; i < n; i++ {
		r := events[40*i : 40*i+40]
		clear(r[:4])
		if o.hasKey[i] != 0 {
			r[0] = 1
		}
		putCell(r, 4, &o.keys, i)
		putCell(r, 12, &o.values, i)
		le.PutUint64(r[24:], uint64(o.stamps[i]))
		end := int(o.headerEnds[i])
		putList(r, 32, addrOf(hdrs[16*h:]), end-h)
		h = end
	}
	putList(out, 4, addrOf(events), n)
	return addr(out)
}

// putCell writes string i of c as a list (address, length) at `at`.
func putCell(area []byte, at int, c *column, i int) {
	start := uint32(0)
	if i > 0 {
		start = c.ends[i-1]
	}
	putList(area, at, addrOf(c.data)+int32(start), int(c.ends[i]-start))
}

// --- on-batch -------------------------------------------------------------------------------

//go:wasmexport on-batch
func wasmOnBatch(ptr int32) int32 {
	startCall()
	outs.reset()
	in := readBatch(mem(ptr, 88))
	var fails rowFailures
	e := &inEvent
	for row := 0; row < in.rows; row++ {
		in.next(row, e)
		mark := len(outs.origins)
		if err := run(e, row); err != nil {
			if fatal := fails.fail(row, err, 108); fatal != 0 {
				return fatal
			}
			outs.rollback(mark)
		}
	}
	endCall()
	o := &outs
	out := area(108)
	o.values.put(out, 4)
	o.keys.put(out, 20)
	putList(out, 36, addrOf(o.hasKey), len(o.hasKey))
	putList(out, 44, addrOf(o.stamps), len(o.stamps))
	putList(out, 52, addrOf(o.headerEnds), len(o.headerEnds))
	o.names.put(out, 60)
	o.hvalues.put(out, 76)
	putList(out, 92, addrOf(o.origins), len(o.origins))
	fails.put(out, 100)
	return addr(out)
}
