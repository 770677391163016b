//! Conformance: flat-map. One event per non-empty line of the value (split on '\n'); key, time
//! and headers copied to each.
const std = @import("std");
const fg = @import("flowgate_c.zig");

export fn fg_process(e: *const fg.fg_event, out: *fg.fg_out, err: *fg.fg_error) c_int {
    _ = err;
    var parts = std.mem.splitScalar(u8, e.value[0..e.value_len], '\n');
    while (parts.next()) |part| {
        if (part.len > 0) fg.fg_emit(out, e, part.ptr, part.len);
    }
    return 0;
}
