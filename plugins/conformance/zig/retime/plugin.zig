//! Conformance: rewriting the event time. The time becomes its second (`timestamp - timestamp
//! mod 1000`, rounding down) plus the value's length in milliseconds. Key, value and headers
//! are kept.
const fg = @import("flowgate_c.zig");

export fn fg_process(e: *const fg.fg_event, out: *fg.fg_out, err: *fg.fg_error) c_int {
    _ = err;
    var o = fg.fg_out_event_of(e);
    o.timestamp = e.timestamp - @mod(e.timestamp, 1000) + @as(i64, @intCast(e.value_len));
    fg.fg_emit_event(out, &o);
    return 0;
}
