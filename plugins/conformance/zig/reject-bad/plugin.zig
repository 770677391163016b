//! Conformance: a per-row error. A value that starts with "bad" fails with invalid-input
//! "bad event" (to the dead-letter topic); the others pass unchanged.
const std = @import("std");
const fg = @import("flowgate_c.zig");

export fn fg_keep(e: *const fg.fg_event, keep: *c_int, err: *fg.fg_error) c_int {
    if (std.mem.startsWith(u8, e.value[0..e.value_len], "bad")) {
        return fg.fg_fail(err, fg.FG_INVALID_INPUT, "bad event");
    }
    keep.* = 1;
    return 0;
}
