// Conformance: a new timestamp, emitted as a whole event. The time becomes the start of its
// second plus the value's length: timestamp - timestamp%1000 + len(value). Key (none, empty or
// bytes), value and headers kept as they are.
package main

func process(e *Event, emit func(value []byte)) error {
	EmitEvent(Event{
		Key:       e.Key,
		HasKey:    e.HasKey,
		Value:     e.Value,
		Timestamp: e.Timestamp - e.Timestamp%1000 + int64(len(e.Value)),
		Headers:   e.Headers,
	})
	return nil
}

func init() { Stage(process) }

func main() {}
