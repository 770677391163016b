// Flowgate plugins in Go: write one function over an event, get both entry points.
//
//	func process(e *Event, emit func(value []byte)) error {
//		emit(e.Value)              // zero, one or more outputs (key, time, headers kept)
//		EmitEvent(Event{Value: v}) // or whole events: here without a key or headers
//		return nil                 // or InvalidInput("why")
//	}
//
//	func init() { Stage(process) }
//	func main() {}
//
// A filter (`world = "filter"` in flowgate.toml) registers one function that says whether to
// keep an event; kept events go on from the host's copy (see flowgate_filter.go):
//
//	func keep(e *Event) (bool, error) { return len(e.Value) > 0, nil }
//
//	func init() { Filter(keep) }
//
// An aggregator over windows registers four functions instead (see flowgate_aggregator.go):
//
//	func init() { Aggregator(create, add, merge, finish) }
//
// `flowgate plugin build` puts this file next to your plugin.go (one `main` package), with
// flowgate_stage.go, flowgate_filter.go or flowgate_aggregator.go for the world in
// flowgate.toml, and builds it with GOOS=wasip1 GOARCH=wasm -buildmode=c-shared. These files
// implement the `flowgate:plugin` worlds' canonical ABI by hand (the Go module proxy, and with
// it the generated bindings, is not needed); batches are read in place. Memory the host writes
// arguments into comes from an arena that is reused after each call; results are kept until
// the next call.
package main

import (
	"encoding/binary"
	"unsafe"
)

// Header is one event header. Names may repeat within an event.
type Header struct {
	Name  string
	Value []byte
}

// Event is one event: the input of a process function, and what EmitEvent outputs.
//
// An input Event and the slices in it are valid until the function returns (batches are read
// in place): copy what you keep.
type Event struct {
	Key       []byte // the key, read only when HasKey
	HasKey    bool   // false: the event has no key, which differs from an empty key
	Value     []byte
	Timestamp int64 // milliseconds since the Unix epoch
	Headers   []Header
}

// Failure is the error a plugin function returns to fail one event.
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

// Any other error counts as invalid input, with its text as the message.
func failureOf(err error) *Failure {
	if f, ok := err.(*Failure); ok {
		return f
	}
	return &Failure{1, err.Error()}
}

func isFatal(err error) bool {
	f, ok := err.(*Failure)
	return ok && f.kind == 2
}

// Config is the stage's config, set before the first event.
var Config = map[string]string{}

var configCheck func() error

// OnInit makes `check` run once the config is set, before any event; an error keeps the plugin
// from being loaded (return Fatal("why") for a bad config).
func OnInit(check func() error) { configCheck = check }

// --- memory ---------------------------------------------------------------------------------

// ArenaSize is how many bytes of arguments (a batch, and what imports return) one call can
// take. The arena is static: the host calls realloc where the Go runtime may not allocate.
const ArenaSize = 16 << 20

var (
	arena     [ArenaSize]byte
	arenaUsed int
	results   [][]byte // the last call's results, kept alive until the next call
	zeroes    [16]uint64
	le        = binary.LittleEndian
)

// addrOf is the address of v's first element, as the canonical ABI passes it (an aligned
// address also when v is empty).
func addrOf[T any](v []T) int32 {
	if len(v) == 0 {
		return int32(uintptr(unsafe.Pointer(&zeroes[0])))
	}
	return int32(uintptr(unsafe.Pointer(unsafe.SliceData(v))))
}

func addr(b []byte) int32 { return addrOf(b) }

func mem(p, n int32) []byte {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(uintptr(uint32(p)))), int(uint32(n)))
}

// memOf is n values of T at p, in place.
func memOf[T any](p, n uint32) []T {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*T)(unsafe.Pointer(uintptr(p))), int(n))
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

// The WASI adapter (which turns the Go runtime's wasip1 imports into WASI 0.2) allocates its
// stack and its state through this, from a static array. Without it the adapter would grow the
// memory itself, behind the Go runtime, which takes memory.grow's new pages for its own heap
// with no regard to who grew them: the adapter's stack and state would then lie in the Go heap,
// and a WASI call would overwrite Go objects (seen as traps inside map lookups once the heap had
// grown over them). The adapter calls this from within the runtime's own WASI calls, so it must
// not allocate, call, or grow its stack.
var (
	adapterMemory [3 << 16]byte // two pages (stack, state), and room to align them
	adapterUsed   uintptr
)

//go:wasmexport cabi_realloc_adapter
//go:nosplit
func cabiReallocAdapter(old, oldSize, align, size int32) int32 {
	if old != 0 {
		return 0 // the adapter only allocates anew; a 0 makes it trap
	}
	base := uintptr(unsafe.Pointer(&adapterMemory))
	a := uintptr(align)
	start := (base + adapterUsed + a - 1) &^ (a - 1)
	if start+uintptr(size) > base+uintptr(len(adapterMemory)) {
		return 0
	}
	adapterUsed = start + uintptr(size) - base
	return int32(start)
}

// startCall drops the last call's results (the host has read them by now).
func startCall() {
	clear(results)
	results = results[:0]
}

// endCall frees the arguments' memory for the next call.
func endCall() {
	arenaUsed = 0
}

// bytesOf is the first n bytes of v's backing array (at most its capacity).
func bytesOf[T any](v []T, n int) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v[:cap(v)]))), n)
}

// area is n bytes for a result, 8-aligned, kept until the next call.
func area(n int) []byte {
	b := bytesOf(make([]uint64, (n+7)/8), n)
	results = append(results, b)
	return b
}

// putList writes a list's (address, length) at `at`.
func putList(area []byte, at int, ptr int32, n int) {
	le.PutUint32(area[at:], uint32(ptr))
	le.PutUint32(area[at+4:], uint32(n))
}

// failure writes an `error` variant at `at`.
func failure(area []byte, at int, err error) {
	f := failureOf(err)
	msg := []byte(f.message)
	results = append(results, msg)
	area[at] = f.kind
	putList(area, at+4, addr(msg), len(msg))
}

// --- keyed state (stages with `state = true`) ------------------------------------------------

//go:wasmimport flowgate:plugin/state@0.1.1 get
func stateGet(keyPtr, keyLen, ret int32)

//go:wasmimport flowgate:plugin/state@0.1.1 put
func statePut(keyPtr, keyLen, valPtr, valLen int32)

//go:wasmimport flowgate:plugin/state@0.1.1 delete
func stateDelete(keyPtr, keyLen int32)

// StateGet is the value stored under key, if any.
func StateGet(key []byte) ([]byte, bool) {
	var ret [3]uint32
	stateGet(addr(key), int32(len(key)), int32(uintptr(unsafe.Pointer(&ret[0]))))
	if ret[0]&0xff == 0 {
		return nil, false
	}
	return append([]byte{}, mem(int32(ret[1]), int32(ret[2]))...), true
}

// StatePut stores value under key.
func StatePut(key, value []byte) {
	statePut(addr(key), int32(len(key)), addr(value), int32(len(value)))
}

// StateDelete removes key.
func StateDelete(key []byte) { stateDelete(addr(key), int32(len(key))) }

// --- logging --------------------------------------------------------------------------------

// LogLevel is the severity of a log line.
type LogLevel int32

const (
	LogTrace LogLevel = iota
	LogDebug
	LogInfo
	LogWarn
	LogError
)

//go:wasmimport flowgate:plugin/log@0.1.1 log
func logLine(level, msgPtr, msgLen int32)

// Log writes one line into the host's logs, tagged with the plugin's name.
func Log(level LogLevel, message string) {
	b := unsafe.Slice(unsafe.StringData(message), len(message))
	logLine(int32(level), addr(b), int32(len(b)))
}

// --- init (every world) ---------------------------------------------------------------------

//go:wasmexport init
func wasmInit(ptr, n int32) int32 {
	startCall()
	list := mem(ptr, n*16)
	for i := 0; i < int(n); i++ {
		e := list[i*16:]
		k := string(mem(int32(le.Uint32(e)), int32(le.Uint32(e[4:]))))
		v := string(mem(int32(le.Uint32(e[8:])), int32(le.Uint32(e[12:]))))
		Config[k] = v
	}
	endCall()
	out := area(16)
	if configCheck != nil {
		if err := configCheck(); err != nil {
			out[0] = 1
			failure(out, 4, err)
		}
	}
	return addr(out)
}

// --- events in ------------------------------------------------------------------------------

var (
	inEvent   Event    // the input, reused: an Event is valid until its function returns
	inHeaders []Header // its headers, reused likewise
)

// readEvent reads an `event` passed flat (an on-event or keep call's arguments) in place into
// inEvent. The arguments stay in the arena until the call ends (imports allocate after them).
func readEvent(keyTag, keyPtr, keyLen, valPtr, valLen int32, ts int64, hPtr, hLen int32) *Event {
	e := &inEvent
	*e = Event{Value: mem(valPtr, valLen), Timestamp: ts, HasKey: keyTag != 0}
	if e.HasKey {
		e.Key = mem(keyPtr, keyLen)
	}
	inHeaders = inHeaders[:0]
	hs := mem(hPtr, hLen*16)
	for i := 0; i < int(hLen); i++ {
		h := hs[i*16:]
		inHeaders = append(inHeaders, Header{
			string(mem(int32(le.Uint32(h)), int32(le.Uint32(h[4:])))),
			mem(int32(le.Uint32(h[8:])), int32(le.Uint32(h[12:]))),
		})
	}
	if len(inHeaders) > 0 {
		e.Headers = inHeaders
	}
	return e
}

// --- batches in -----------------------------------------------------------------------------

// batchIn is a `batch` record read in place.
type batchIn struct {
	values, keys, names, hvalues column
	hasKey                       []byte
	stamps                       []int64
	headerEnds                   []uint32
	rows                         int
	h                            int // the next row's first header
}

func readColumn(b []byte) column {
	return column{
		mem(int32(le.Uint32(b)), int32(le.Uint32(b[4:]))),
		memOf[uint32](le.Uint32(b[8:]), le.Uint32(b[12:])),
	}
}

func readBatch(in []byte) batchIn {
	rows := le.Uint32(in[44:])
	return batchIn{
		values:     readColumn(in[0:]),
		keys:       readColumn(in[16:]),
		names:      readColumn(in[56:]),
		hvalues:    readColumn(in[72:]),
		hasKey:     mem(int32(le.Uint32(in[32:])), int32(le.Uint32(in[36:]))),
		stamps:     memOf[int64](le.Uint32(in[40:]), rows),
		headerEnds: memOf[uint32](le.Uint32(in[48:]), le.Uint32(in[52:])),
		rows:       int(rows),
	}
}

// next fills e with row `row`; rows are read in order.
func (b *batchIn) next(row int, e *Event) {
	*e = Event{Value: b.values.cell(row), Timestamp: b.stamps[row], HasKey: b.hasKey[row] != 0}
	if e.HasKey {
		e.Key = b.keys.cell(row)
	}
	inHeaders = inHeaders[:0]
	for end := int(b.headerEnds[row]); b.h < end; b.h++ {
		inHeaders = append(inHeaders, Header{string(b.names.cell(b.h)), b.hvalues.cell(b.h)})
	}
	if len(inHeaders) > 0 {
		e.Headers = inHeaders
	}
}

// --- byte columns ---------------------------------------------------------------------------

// column is a `bytes-column`: strings back to back and the end of each.
type column struct {
	data []byte
	ends []uint32
}

func (c *column) cell(i int) []byte {
	start := uint32(0)
	if i > 0 {
		start = c.ends[i-1]
	}
	return c.data[start:c.ends[i]:c.ends[i]]
}

func (c *column) push(b []byte) {
	c.data = append(c.data, b...)
	c.ends = append(c.ends, uint32(len(c.data)))
}

func (c *column) pushString(s string) {
	c.data = append(c.data, s...)
	c.ends = append(c.ends, uint32(len(c.data)))
}

// truncate keeps the first n strings.
func (c *column) truncate(n int) {
	end := uint32(0)
	if n > 0 {
		end = c.ends[n-1]
	}
	c.data, c.ends = c.data[:end], c.ends[:n]
}

// put writes the column as a `bytes-column` record at `at`.
func (c *column) put(area []byte, at int) {
	putList(area, at, addrOf(c.data), len(c.data))
	putList(area, at+8, addrOf(c.ends), len(c.ends))
}

// rowFailure is a row of a batch that failed, and why.
type rowFailure struct {
	row uint32
	err error
}

// rowFailures are the rows of a batch that failed, for on-batch and keep-batch.
type rowFailures []rowFailure

// fail records that row failed with err. A fatal err ends the call instead: it returns the
// address of the error result (size bytes: the case byte, then the error at 4), to be returned
// at once; otherwise 0.
func (fs *rowFailures) fail(row int, err error, size int) int32 {
	if isFatal(err) {
		endCall()
		return errResult(size, err)
	}
	*fs = append(*fs, rowFailure{uint32(row), err})
	return 0
}

// put writes the list<row-error> at `at` of out.
func (fs rowFailures) put(out []byte, at int) {
	failures := area(16 * len(fs))
	for i, f := range fs {
		le.PutUint32(failures[i*16:], f.row)
		failure(failures[i*16:], 4, f.err)
	}
	putList(out, at, addrOf(failures), len(fs))
}

// errResult writes the error case of a result of size bytes (the case byte 1, the error at 4)
// and returns its address.
func errResult(size int, err error) int32 {
	out := area(size)
	out[0] = 1
	failure(out, 4, err)
	return addr(out)
}
