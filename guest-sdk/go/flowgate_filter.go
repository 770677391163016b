// The `flowgate:plugin/filter` world: `keep` and `keep-batch` run the one keep function
// (flowgate.go has the types, `init` and the canonical-ABI helpers). The plugin only says which
// events go on: the host passes the kept events on from its own copy, so none is copied out of
// the plugin and back.
package main

var filterKeep func(e *Event) (bool, error)

// Filter makes `k` the plugin: k returns true to keep the event as it is, false to drop it, or
// an error to fail it (InvalidInput("why"): to the dead-letter topic; Fatal("why"): the stage
// stops).
func Filter(k func(e *Event) (bool, error)) { filterKeep = k }

// --- keep -----------------------------------------------------------------------------------

// result<bool, error>: the case byte, then at offset 4 the bool or the error; 16 bytes.
//
//go:wasmexport keep
func wasmKeep(keyTag, keyPtr, keyLen, valPtr, valLen int32, ts int64, hPtr, hLen int32) int32 {
	startCall()
	e := readEvent(keyTag, keyPtr, keyLen, valPtr, valLen, ts, hPtr, hLen)
	kept, err := filterKeep(e)
	endCall()
	if err != nil {
		return errResult(16, err)
	}
	out := area(16)
	if kept {
		out[4] = 1
	}
	return addr(out)
}

// --- keep-batch -----------------------------------------------------------------------------

// The rows kept, reused from call to call: the host has read the last call's by the next one.
var keptRows []uint32

// result<selection, error>: the case byte, then at offset 4 the selection (kept at 4, failures
// at 12) or the error; 20 bytes.
//
//go:wasmexport keep-batch
func wasmKeepBatch(ptr int32) int32 {
	startCall()
	in := readBatch(mem(ptr, 88))
	keptRows = keptRows[:0]
	var fails rowFailures
	e := &inEvent
	for row := 0; row < in.rows; row++ {
		in.next(row, e)
		kept, err := filterKeep(e)
		if err != nil {
			if fatal := fails.fail(row, err, 20); fatal != 0 {
				return fatal
			}
			continue
		}
		if kept {
			keptRows = append(keptRows, uint32(row))
		}
	}
	endCall()
	out := area(20)
	putList(out, 4, addrOf(keptRows), len(keptRows))
	fails.put(out, 12)
	return addr(out)
}
