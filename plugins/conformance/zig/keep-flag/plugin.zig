//! Conformance: a filter on a JSON field. Keeps an event whose value is a JSON object with a
//! top-level field "keep" that is true; a value that is not a JSON object fails with
//! invalid-input "not a JSON object".
const std = @import("std");
const fg = @import("flowgate_c.zig");

export fn fg_process(e: *const fg.fg_event, out: *fg.fg_out, err: *fg.fg_error) c_int {
    const parsed = std.json.parseFromSlice(std.json.Value, std.heap.c_allocator, e.value[0..e.value_len], .{}) catch
        return fg.fg_fail(err, fg.FG_INVALID_INPUT, "not a JSON object");
    defer parsed.deinit();
    switch (parsed.value) {
        .object => |o| {
            if (o.get("keep")) |k| {
                if (k == .bool and k.bool) fg.fg_emit_input(out, e);
            }
            return 0;
        },
        else => return fg.fg_fail(err, fg.FG_INVALID_INPUT, "not a JSON object"),
    }
}
