// Conformance: a new key from the value. When the value contains `"user":"`, the key becomes
// the bytes after it up to the next `"` (or to the end of the value); otherwise the output has
// no key at all (not an empty one). Value, time and headers kept. A plain byte search.
package main

import "bytes"

var marker = []byte(`"user":"`)

func process(e *Event, emit func(value []byte)) error {
	o := *e
	if i := bytes.Index(e.Value, marker); i >= 0 {
		user := e.Value[i+len(marker):]
		if j := bytes.IndexByte(user, '"'); j >= 0 {
			user = user[:j]
		}
		o.Key, o.HasKey = user, true
	} else {
		o.Key, o.HasKey = nil, false
	}
	EmitEvent(o)
	return nil
}

func init() { Stage(process) }

func main() {}
