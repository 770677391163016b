//! A stage with keyed state in Zig: replaces each value with the number of events seen so far
//! with its key (events without a key count under the empty key), as decimal text; the count is
//! stored as 8 little-endian bytes.
//! Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.
//!
//! In a pipeline the stage needs `state = true`: the host keeps the state with the stage's
//! input position (after a crash both come back from the same point, so no event is counted
//! twice or missed) and undoes the writes of a call that fails. The state functions are the
//! generated bindings: `fg.flowgate_plugin_state_get`, `fg.flowgate_plugin_state_put`,
//! `fg.flowgate_plugin_state_delete` and `fg.flowgate_plugin_state_scan`.
//! `flowgate_c.zig` turns this function into the `on-event` and `on-batch` entry points; fail
//! one event with `return fg.fg_fail(err, fg.FG_INVALID_INPUT, "why");` (to the dead-letter
//! topic).
const std = @import("std");
const fg = @import("flowgate_c.zig");

export fn fg_process(e: *const fg.fg_event, out: *fg.fg_out, err: *fg.fg_error) c_int {
    _ = err;
    var empty: u8 = 0;
    var key = fg.stage_list_u8_t{
        .ptr = if (e.key != null) @constCast(e.key) else &empty,
        .len = e.key_len,
    };
    var got: fg.stage_list_u8_t = undefined;
    var n: u64 = 0;
    if (fg.flowgate_plugin_state_get(&key, &got)) {
        if (got.len == 8) n = std.mem.readInt(u64, got.ptr[0..8], .little);
        fg.stage_list_u8_free(&got);
    }
    n += 1;
    var bytes: [8]u8 = undefined;
    std.mem.writeInt(u64, &bytes, n, .little);
    var stored = fg.stage_list_u8_t{ .ptr = &bytes, .len = 8 };
    fg.flowgate_plugin_state_put(&key, &stored);
    // Written in place: room for 20 digits, then the value is the digits written.
    const v = fg.fg_value_reserve(out, 20)[0..20];
    const digits = std.fmt.bufPrint(v, "{d}", .{n}) catch unreachable;
    fg.fg_emit(out, e, digits.ptr, digits.len);
    return 0;
}
