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
    const value = e.value[0..e.value_len];
    // Values up to 4 KiB are upper-cased on the stack; larger ones on the heap.
    var buf: [4096]u8 = undefined;
    const upper = if (value.len <= buf.len)
        buf[0..value.len]
    else
        std.heap.c_allocator.alloc(u8, value.len) catch
            return fg.fg_fail(err, fg.FG_RETRYABLE, "out of memory");
    defer if (value.len > buf.len) std.heap.c_allocator.free(upper);
    fg.fg_emit(out, e, std.ascii.upperString(upper, value).ptr, value.len);
    return 0;
}
