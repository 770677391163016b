// A stage with keyed state in Go: replaces each value with the number of events seen so far
// with its key (events without a key count under the empty key), as decimal text. The count is
// stored as 8 little-endian bytes. The stage needs `state = true` in the pipeline.
// Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.
//
// flowgate.go (put next to this file by each build) turns this one function into the
// `on-event` and `on-batch` entry points. StateGet, StatePut and StateDelete reach the keyed
// state; a call that fails has its writes undone. Call emit(value) zero, one or more times
// (key, time and headers kept), or EmitEvent(Event{...}) for a whole event of your own; return
// InvalidInput("why") to fail one event (it goes to the dead-letter topic).
package main

import (
	"encoding/binary"
	"strconv"
)

func process(e *Event, emit func(value []byte)) error {
	key := e.Key
	if !e.HasKey {
		key = nil // no key counts under the empty key
	}
	var n uint64
	if stored, ok := StateGet(key); ok && len(stored) == 8 {
		n = binary.LittleEndian.Uint64(stored)
	}
	n++
	StatePut(key, binary.LittleEndian.AppendUint64(nil, n))
	emit(strconv.AppendUint(nil, n, 10))
	return nil
}

func init() { Stage(process) }

func main() {}
