//! A filter stage in Zig: keeps the events whose value contains the bytes `error`
//! (case-sensitive), unchanged, and drops the others.
//! Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.
//!
//! `flowgate_c.zig` (written into build/include/ by each build: the C bindings generated from
//! the WIT and the C helper, through `zig translate-c`) turns this one function into the
//! `on-event` and `on-batch` entry points. Keep an event with `fg.fg_emit_input` (emit nothing
//! to drop it); fail one event with `return fg.fg_fail(err, fg.FG_INVALID_INPUT, "why");` (to
//! the dead-letter topic).
const std = @import("std");
const fg = @import("flowgate_c.zig");

export fn fg_process(e: *const fg.fg_event, out: *fg.fg_out, err: *fg.fg_error) c_int {
    _ = err;
    if (std.mem.indexOf(u8, e.value[0..e.value_len], "error") != null) fg.fg_emit_input(out, e);
    return 0;
}
