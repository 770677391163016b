//! A flat-map stage in Zig: one event per word of the value (split on spaces, empty pieces
//! skipped), each with the input's key, time and headers.
//! Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.
//!
//! `flowgate_c.zig` (written into build/include/ by each build: the C bindings generated from
//! the WIT and the C helper, through `zig translate-c`) turns this one function into the
//! `on-event` and `on-batch` entry points. Emit any number of outputs with `fg.fg_emit` (a new
//! value; key, time and headers kept) or `fg.fg_emit_event` (a whole event: key or none, value,
//! time, headers); emit none to drop the event. Fail one event with
//! `return fg.fg_fail(err, fg.FG_INVALID_INPUT, "why");` (to the dead-letter topic; what it
//! emitted is dropped).
const std = @import("std");
const fg = @import("flowgate_c.zig");

export fn fg_process(e: *const fg.fg_event, out: *fg.fg_out, err: *fg.fg_error) c_int {
    _ = err;
    var words = std.mem.tokenizeScalar(u8, e.value[0..e.value_len], ' ');
    while (words.next()) |word| fg.fg_emit(out, e, word.ptr, word.len);
    return 0;
}
