// Flowgate plugins in Go: write one function over an event, get both entry points.
//
//	func process(e *Event, emit func(value []byte)) error {
//		emit(e.Value)              // zero, one or more outputs
//		return nil                 // or InvalidInput("why")
//	}
//
//	func init() { Stage(process) }
//	func main() {}
//
// `flowgate plugin build` puts this file next to your plugin.go (one `main` package) and
// builds it with GOOS=wasip1 GOARCH=wasm -buildmode=c-shared. This file implements the
// `flowgate:plugin/stage` world's canonical ABI by hand (the Go module proxy, and with it the
// generated bindings, is not needed): `init`, `on-event` and `on-batch` run `process`; the
// batch path reads the flat buffers in place. Memory the host writes arguments into comes from
// an arena that is reused after each call, results are kept until the next call.
package main

import (
	"encoding/binary"
	"unsafe"
)

// Header is one event header.
type Header struct {
	Name  string
	Value []byte
}

// Event is one input event.
type Event struct {
	Key       []byte // nil when the event has no key
	HasKey    bool
	Value     []byte
	Timestamp int64
	Headers   []Header
}

// Failure is the error a process function returns to fail one event.
type Failure struct {
	kind    uint8
	message string
}

func (f *Failure) Error() string { return f.message }

// InvalidInput fails the event for good: it goes to the dead-letter topic.
func InvalidInput(message string) error { return &Failure{1, message} }

// Retryable asks the host to retry the event later.
func Retryable(message string) error { return &Failure{0, message} }

// Fatal stops the stage.
func Fatal(message string) error { return &Failure{2, message} }

// Config is the stage's config, set before the first event.
var Config = map[string]string{}

var stageProcess func(e *Event, emit func(value []byte)) error

// Stage makes `p` the plugin.
func Stage(p func(e *Event, emit func(value []byte)) error) { stageProcess = p }

// --- memory ---------------------------------------------------------------------------------

// ArenaSize is how many bytes of arguments (a batch, and what imports return) one call can
// take. The arena is static: the host calls realloc where the Go runtime may not allocate.
const ArenaSize = 16 << 20

var (
	arena     [ArenaSize]byte
	arenaUsed int
	keep      [][]byte
	zeroes    [16]uint64
	le        = binary.LittleEndian
)

func addr(b []byte) int32 {
	if len(b) == 0 {
		return int32(uintptr(unsafe.Pointer(&zeroes[0])))
	}
	return int32(uintptr(unsafe.Pointer(&b[0])))
}

func mem(p, n int32) []byte {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(uintptr(uint32(p)))), int(uint32(n)))
}

// The host allocates arguments (and import results) through these. They are not
// `cabi_realloc`: that one would also be handed to the WASI adapter, which calls it while the
// component starts, before the Go runtime runs.
//
//go:wasmexport cabi_export_realloc
func cabiExportRealloc(old, oldSize, align, size int32) int32 {
	return cabiRealloc(old, oldSize, align, size)
}

//go:wasmexport cabi_import_realloc
func cabiImportRealloc(old, oldSize, align, size int32) int32 {
	return cabiRealloc(old, oldSize, align, size)
}

func cabiRealloc(old, oldSize, align, size int32) int32 {
	base := int(uintptr(unsafe.Pointer(&arena[0])))
	a := int(align)
	start := ((base+arenaUsed+a-1)/a)*a - base
	if start+int(size) > ArenaSize {
		return 0 // the host reports the failed allocation; ArenaSize bounds one call's input
	}
	arenaUsed = start + int(size)
	out := arena[start : start+int(size)]
	if old != 0 && oldSize > 0 {
		copy(out, mem(old, oldSize))
	}
	return addr(out)
}

// endCall frees the arguments' memory for the next call.
func endCall() {
	arenaUsed = 0
}

// result keeps `b` alive until the next call and returns its address.
func result(b []byte) int32 {
	keep = append(keep, b)
	return addr(b)
}

func failure(area []byte, at int, err error) {
	f, ok := err.(*Failure)
	if !ok {
		f = &Failure{1, err.Error()}
	}
	msg := []byte(f.message)
	keep = append(keep, msg)
	area[at] = f.kind
	le.PutUint32(area[at+4:], uint32(addr(msg)))
	le.PutUint32(area[at+8:], uint32(len(msg)))
}

// --- keyed state (stages with `state = true`) ------------------------------------------------

//go:wasmimport flowgate:plugin/state@0.1.0 get
func stateGet(keyPtr, keyLen, ret int32)

//go:wasmimport flowgate:plugin/state@0.1.0 put
func statePut(keyPtr, keyLen, valPtr, valLen int32)

//go:wasmimport flowgate:plugin/state@0.1.0 delete
func stateDelete(keyPtr, keyLen int32)

// StateGet is the value stored under key, if any.
func StateGet(key []byte) ([]byte, bool) {
	var ret [3]uint32
	stateGet(addr(key), int32(len(key)), int32(uintptr(unsafe.Pointer(&ret[0]))))
	if ret[0]&0xff == 0 {
		return nil, false
	}
	return append([]byte(nil), mem(int32(ret[1]), int32(ret[2]))...), true
}

// StatePut stores value under key.
func StatePut(key, value []byte) {
	statePut(addr(key), int32(len(key)), addr(value), int32(len(value)))
}

// StateDelete removes key.
func StateDelete(key []byte) { stateDelete(addr(key), int32(len(key))) }

// --- init -----------------------------------------------------------------------------------

//go:wasmexport init
func wasmInit(ptr, n int32) int32 {
	keep = keep[:0]
	area := make([]byte, 16)
	list := mem(ptr, n*16)
	for i := 0; i < int(n); i++ {
		e := list[i*16:]
		k := string(mem(int32(le.Uint32(e)), int32(le.Uint32(e[4:]))))
		v := string(mem(int32(le.Uint32(e[8:])), int32(le.Uint32(e[12:]))))
		Config[k] = v
	}
	endCall()
	return result(area)
}

// --- on-event -------------------------------------------------------------------------------

//go:wasmexport on-event
func wasmOnEvent(keyTag, keyPtr, keyLen, valPtr, valLen int32, ts int64, hPtr, hLen int32) int32 {
	keep = keep[:0]
	e := Event{Value: append([]byte(nil), mem(valPtr, valLen)...), Timestamp: ts}
	if keyTag != 0 {
		e.HasKey = true
		e.Key = append([]byte{}, mem(keyPtr, keyLen)...)
	}
	hs := mem(hPtr, hLen*16)
	for i := 0; i < int(hLen); i++ {
		h := hs[i*16:]
		e.Headers = append(e.Headers, Header{
			string(mem(int32(le.Uint32(h)), int32(le.Uint32(h[4:])))),
			append([]byte(nil), mem(int32(le.Uint32(h[8:])), int32(le.Uint32(h[12:])))...),
		})
	}
	endCall()
	var outs [][]byte
	err := stageProcess(&e, func(v []byte) { outs = append(outs, append([]byte(nil), v...)) })
	area := make([]byte, 16)
	if err != nil {
		area[0] = 1
		failure(area, 4, err)
		return result(area)
	}
	// The headers, once, shared by every output.
	hdrs := make([]byte, 16*len(e.Headers))
	for i, h := range e.Headers {
		name := []byte(h.Name)
		keep = append(keep, name, h.Value)
		le.PutUint32(hdrs[i*16:], uint32(addr(name)))
		le.PutUint32(hdrs[i*16+4:], uint32(len(name)))
		le.PutUint32(hdrs[i*16+8:], uint32(addr(h.Value)))
		le.PutUint32(hdrs[i*16+12:], uint32(len(h.Value)))
	}
	keep = append(keep, hdrs, e.Key)
	events := make([]byte, 40*len(outs)+8)
	base := (8 - int(uintptr(unsafe.Pointer(&events[0])))%8) % 8
	list := events[base:]
	for i, v := range outs {
		o := list[i*40:]
		if e.HasKey {
			o[0] = 1
			le.PutUint32(o[4:], uint32(addr(e.Key)))
			le.PutUint32(o[8:], uint32(len(e.Key)))
		}
		keep = append(keep, v)
		le.PutUint32(o[12:], uint32(addr(v)))
		le.PutUint32(o[16:], uint32(len(v)))
		le.PutUint64(o[24:], uint64(e.Timestamp))
		le.PutUint32(o[32:], uint32(addr(hdrs)))
		le.PutUint32(o[36:], uint32(len(e.Headers)))
	}
	keep = append(keep, events)
	le.PutUint32(area[4:], uint32(addr(list)))
	le.PutUint32(area[8:], uint32(len(outs)))
	return result(area)
}

// --- on-batch -------------------------------------------------------------------------------

type column struct {
	data []byte
	ends []uint32
}

func readColumn(b []byte) (data []byte, ends []uint32) {
	data = mem(int32(le.Uint32(b)), int32(le.Uint32(b[4:])))
	n := int(le.Uint32(b[12:]))
	if n > 0 {
		ends = unsafe.Slice((*uint32)(unsafe.Pointer(uintptr(le.Uint32(b[8:])))), n)
	}
	return
}

func cell(data []byte, ends []uint32, i int) []byte {
	start := uint32(0)
	if i > 0 {
		start = ends[i-1]
	}
	return data[start:ends[i]]
}

func (c *column) push(b []byte) {
	c.data = append(c.data, b...)
	c.ends = append(c.ends, uint32(len(c.data)))
}

func u32s(v []uint32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		le.PutUint32(b[i*4:], x)
	}
	return b
}

func putList(area []byte, at int, b []byte, n int) {
	keep = append(keep, b)
	le.PutUint32(area[at:], uint32(addr(b)))
	le.PutUint32(area[at+4:], uint32(n))
}

func putColumn(area []byte, at int, c *column) {
	putList(area, at, c.data, len(c.data))
	putList(area, at+8, u32s(c.ends), len(c.ends))
}

//go:wasmexport on-batch
func wasmOnBatch(ptr int32) int32 {
	keep = keep[:0]
	in := mem(ptr, 88)
	values, valueEnds := readColumn(in[0:])
	keys, keyEnds := readColumn(in[16:])
	hasKey := mem(int32(le.Uint32(in[32:])), int32(le.Uint32(in[36:])))
	rows := int(le.Uint32(in[44:]))
	var stamps []int64
	var headerEnds []uint32
	if rows > 0 {
		stamps = unsafe.Slice((*int64)(unsafe.Pointer(uintptr(le.Uint32(in[40:])))), rows)
		headerEnds = unsafe.Slice((*uint32)(unsafe.Pointer(uintptr(le.Uint32(in[48:])))), rows)
	}
	names, nameEnds := readColumn(in[56:])
	hvalues, hvalueEnds := readColumn(in[72:])

	var outValues, outKeys, outNames, outHValues column
	var outHasKey []byte
	var outStamps []byte
	var outHeaderEnds, origins []uint32
	type rowFailure struct {
		row uint32
		err error
	}
	var fails []rowFailure
	h := 0
	for row := 0; row < rows; row++ {
		e := Event{Value: cell(values, valueEnds, row), Timestamp: stamps[row]}
		if hasKey[row] != 0 {
			e.HasKey = true
			e.Key = cell(keys, keyEnds, row)
		}
		for ; h < int(headerEnds[row]); h++ {
			e.Headers = append(e.Headers, Header{string(cell(names, nameEnds, h)), cell(hvalues, hvalueEnds, h)})
		}
		mark := [...]int{len(outValues.data), len(outValues.ends), len(outKeys.data), len(outNames.data), len(outNames.ends), len(outHValues.data)}
		err := stageProcess(&e, func(v []byte) {
			outValues.push(v)
			outKeys.push(e.Key)
			if e.HasKey {
				outHasKey = append(outHasKey, 1)
			} else {
				outHasKey = append(outHasKey, 0)
			}
			outStamps = le.AppendUint64(outStamps, uint64(e.Timestamp))
			for _, hd := range e.Headers {
				outNames.push([]byte(hd.Name))
				outHValues.push(hd.Value)
			}
			outHeaderEnds = append(outHeaderEnds, uint32(len(outNames.ends)))
			origins = append(origins, uint32(row))
		})
		if err != nil {
			if f, ok := err.(*Failure); ok && f.kind == 2 {
				endCall()
				area := make([]byte, 108)
				area[0] = 1
				failure(area, 4, err)
				return result(area)
			}
			n := mark[1]
			outValues.data, outValues.ends = outValues.data[:mark[0]], outValues.ends[:n]
			outKeys.data, outKeys.ends = outKeys.data[:mark[2]], outKeys.ends[:n]
			outNames.data, outNames.ends = outNames.data[:mark[3]], outNames.ends[:mark[4]]
			outHValues.data, outHValues.ends = outHValues.data[:mark[5]], outHValues.ends[:mark[4]]
			outHasKey, outStamps = outHasKey[:n], outStamps[:8*n]
			outHeaderEnds, origins = outHeaderEnds[:n], origins[:n]
			fails = append(fails, rowFailure{uint32(row), err})
		}
	}
	// Everything read from the arguments is copied into the outputs by now.
	out := make([]byte, 108)
	putColumn(out, 4, &outValues)
	putColumn(out, 20, &outKeys)
	putList(out, 36, outHasKey, len(outHasKey))
	stampsCopy := make([]byte, len(outStamps)+8)
	base := (8 - int(uintptr(unsafe.Pointer(&stampsCopy[0])))%8) % 8
	copy(stampsCopy[base:], outStamps)
	keep = append(keep, stampsCopy)
	le.PutUint32(out[44:], uint32(addr(stampsCopy[base:])))
	le.PutUint32(out[48:], uint32(len(outStamps)/8))
	putList(out, 52, u32s(outHeaderEnds), len(outHeaderEnds))
	putColumn(out, 60, &outNames)
	putColumn(out, 76, &outHValues)
	putList(out, 92, u32s(origins), len(origins))
	failures := make([]byte, 16*len(fails))
	for i, f := range fails {
		le.PutUint32(failures[i*16:], f.row)
		failure(failures[i*16:], 4, f.err)
	}
	putList(out, 100, failures, len(fails))
	endCall()
	return result(out)
}
