// Conformance: a per-row error. A value that starts with "bad" fails with invalid-input
// "bad event" (to the dead-letter topic); the others pass unchanged.
package main

import "bytes"

func process(e *Event, emit func(value []byte)) error {
	if bytes.HasPrefix(e.Value, []byte("bad")) {
		return InvalidInput("bad event")
	}
	emit(e.Value)
	return nil
}

func init() { Stage(process) }

func main() {}
