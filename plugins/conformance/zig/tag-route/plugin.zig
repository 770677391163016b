//! Conformance: setting a header. The output has the input's headers in order, then `route` =
//! `json` when the value starts with `{` and `text` otherwise. Key, value and time are kept.
const fg = @import("flowgate_c.zig");

export fn fg_process(e: *const fg.fg_event, out: *fg.fg_out, err: *fg.fg_error) c_int {
    _ = err;
    const json = e.value_len > 0 and e.value[0] == '{';
    const route = fg.fg_header{
        .name = "route",
        .name_len = 5,
        .value = if (json) "json" else "text",
        .value_len = 4,
    };
    var o = fg.fg_out_event_of(e); // the input's headers first (headers_of), then route
    o.headers = &route;
    o.header_count = 1;
    fg.fg_emit_event(out, &o);
    return 0;
}
