// Conformance: a per-key counter in keyed state (the stage needs `state = true`). The value of
// each output is the number of events seen with its key so far (the empty key for events
// without one), as decimal text; the count is stored as 8 little-endian bytes.
package main

import (
	"encoding/binary"
	"strconv"
)

func process(e *Event, emit func(value []byte)) error {
	key := e.Key
	if key == nil {
		key = []byte{}
	}
	var n uint64
	if stored, ok := StateGet(key); ok && len(stored) == 8 {
		n = binary.LittleEndian.Uint64(stored)
	}
	n++
	StatePut(key, binary.LittleEndian.AppendUint64(nil, n))
	emit([]byte(strconv.FormatUint(n, 10)))
	return nil
}

func init() { Stage(process) }

func main() {}
