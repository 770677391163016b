//! Conformance: a per-key counter in keyed state (the stage needs `state = true`). The value of
//! each output is the number of events seen with its key so far (the empty key for events
//! without one), as decimal text; the count is stored as 8 little-endian bytes.
const std = @import("std");
const fg = @import("flowgate_c.zig");

export fn fg_process(e: *const fg.fg_event, out: *fg.fg_out, err: *fg.fg_error) c_int {
    _ = err;
    var empty: u8 = 0;
    var key = fg.stage_list_u8_t{
        .ptr = if (e.key != null) @constCast(e.key) else &empty,
        .len = if (e.key != null) e.key_len else 0,
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
    var value = fg.stage_list_u8_t{ .ptr = &bytes, .len = 8 };
    fg.flowgate_plugin_state_put(&key, &value);
    var text: [24]u8 = undefined;
    const s = std.fmt.bufPrint(&text, "{d}", .{n}) catch unreachable;
    fg.fg_emit(out, e, s.ptr, s.len);
    return 0;
}
