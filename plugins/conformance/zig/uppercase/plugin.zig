//! A map stage in Zig: upper-cases each event's value (ASCII), keeping key, time and headers.
//! Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.
//!
//! `flowgate_c.zig` (written into build/include/ by each build: the C bindings generated from
//! the WIT and the C helper, through `zig translate-c`) turns this one function into the
//! `on-event` and `on-batch` entry points. Emit with `fg.fg_emit` / `fg.fg_emit_input`; fail one
//! event with `return fg.fg_fail(err, fg.FG_INVALID_INPUT, "why");` (to the dead-letter topic).
const std = @import("std");
const fg = @import("flowgate_c.zig");

export fn fg_process(e: *const fg.fg_event, out: *fg.fg_out, err: *fg.fg_error) c_int {
    _ = err;
    const value = e.value[0..e.value_len];
    const upper = std.heap.c_allocator.alloc(u8, value.len) catch return 1;
    defer std.heap.c_allocator.free(upper);
    for (value, upper) |c, *u| {
        u.* = std.ascii.toUpper(c);
    }
    fg.fg_emit(out, e, upper.ptr, upper.len);
    return 0;
}
