// Conformance: a per-row error. A value that starts with "bad" fails with invalid-input
// "bad event" (to the dead-letter topic); the others pass unchanged.
package main

import "bytes"

func keep(e *Event) (bool, error) {
	if bytes.HasPrefix(e.Value, []byte("bad")) {
		return false, InvalidInput("bad event")
	}
	return true, nil
}

func init() { Filter(keep) }

func main() {}
