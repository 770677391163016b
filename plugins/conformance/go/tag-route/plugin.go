// Conformance: a header added to the input's. The output's headers are the input's, in order,
// then `route`: `json` when the value starts with `{`, else `text` (also for an empty value).
// Key, value and time kept.
package main

func process(e *Event, emit func(value []byte)) error {
	route := "text"
	if len(e.Value) > 0 && e.Value[0] == '{' {
		route = "json"
	}
	o := *e
	o.Headers = append(append([]Header(nil), e.Headers...), Header{"route", []byte(route)})
	EmitEvent(o)
	return nil
}

func init() { Stage(process) }

func main() {}
