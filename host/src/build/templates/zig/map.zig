//! A map stage in Zig: upper-cases each event's value (ASCII), keeping key, time and headers.
//! Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.
//!
//! `flowgate_c.zig` (written into build/include/ by each build: the C bindings generated from
//! the WIT and the C helper, through `zig translate-c`) turns this one function into the
//! `on-event` and `on-batch` entry points. Emit with `fg.fg_emit` / `fg.fg_emit_input` /
//! `fg.fg_emit_event`; fail one event with `return fg.fg_fail(err, fg.FG_INVALID_INPUT, "why");`
//! (to the dead-letter topic).
const std = @import("std");
const fg = @import("flowgate_c.zig");

export fn fg_process(e: *const fg.fg_event, out: *fg.fg_out, err: *fg.fg_error) c_int {
    _ = err;
    const value = e.value[0..e.value_len];
    // The new value is written straight into the output buffer: no copy.
    const v = fg.fg_value_reserve(out, value.len)[0..value.len];
    upper(v, value);
    fg.fg_emit(out, e, v.ptr, v.len);
    return 0;
}

/// `src` in ASCII upper case into `dst`: 16 bytes at a time with WebAssembly SIMD (Zig does
/// not vectorise the plain loop for wasm), then byte by byte.
fn upper(dst: []u8, src: []const u8) void {
    const V = @Vector(16, u8);
    var i: usize = 0;
    while (i + 16 <= src.len) : (i += 16) {
        const c: V = src[i..][0..16].*;
        const lower = c -% @as(V, @splat('a')) < @as(V, @splat(26));
        dst[i..][0..16].* = @select(u8, lower, c ^ @as(V, @splat(0x20)), c);
    }
    for (src[i..], dst[i..]) |c, *d| d.* = std.ascii.toUpper(c);
}
