//! Conformance: re-keying. When the value contains `"user":"`, the new key is the text after it
//! up to the next `"` (to the end of the value when there is none); otherwise the event has no
//! key. Value, time and headers are kept. A byte search, not a JSON parser.
const std = @import("std");
const fg = @import("flowgate_c.zig");

export fn fg_process(e: *const fg.fg_event, out: *fg.fg_out, err: *fg.fg_error) c_int {
    _ = err;
    const value = e.value[0..e.value_len];
    const field = "\"user\":\"";
    var o = fg.fg_out_event_of(e);
    o.key = null; // none, unless the field is there
    o.key_len = 0;
    if (std.mem.indexOf(u8, value, field)) |at| {
        const rest = value[at + field.len ..];
        o.key = rest.ptr;
        o.key_len = std.mem.indexOfScalar(u8, rest, '"') orelse rest.len;
    }
    fg.fg_emit_event(out, &o);
    return 0;
}
