//! A filter in Zig: keeps the events whose value contains the bytes `error` (case-sensitive),
//! unchanged, and drops the others.
//! Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.
//!
//! `flowgate_c.zig` (written into build/include/ by each build: the C bindings generated from
//! the WIT and the C helper, through `zig translate-c`) turns this one function into the filter
//! world's `keep` and `keep-batch` entry points (`world = "filter"` in flowgate.toml): the plugin
//! only says which events it keeps, and they go on from the host's own copy. `keep.*` starts at
//! 0 (drop): set it to 1 to keep the event; fail one event with
//! `return fg.fg_fail(err, fg.FG_INVALID_INPUT, "why");` (to the dead-letter topic).
const std = @import("std");
const fg = @import("flowgate_c.zig");

export fn fg_keep(e: *const fg.fg_event, keep: *c_int, err: *fg.fg_error) c_int {
    _ = err;
    if (std.mem.indexOf(u8, e.value[0..e.value_len], "error") != null) keep.* = 1;
    return 0;
}
