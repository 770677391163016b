//! Conformance: a filter on a JSON field. Keeps an event whose value is a JSON object with a
//! top-level field "keep" that is true; a value that is not a JSON object fails with
//! invalid-input "not a JSON object".
const std = @import("std");
const fg = @import("flowgate_c.zig");

export fn fg_keep(e: *const fg.fg_event, keep: *c_int, err: *fg.fg_error) c_int {
    const parsed = std.json.parseFromSlice(std.json.Value, std.heap.c_allocator, e.value[0..e.value_len], .{
        .duplicate_field_behavior = .use_last, // a repeated key: the last one counts
    }) catch
        return fg.fg_fail(err, fg.FG_INVALID_INPUT, "not a JSON object");
    defer parsed.deinit();
    switch (parsed.value) {
        .object => |o| {
            if (o.get("keep")) |k| {
                if (k == .bool and k.bool) keep.* = 1;
            }
            return 0;
        },
        else => return fg.fg_fail(err, fg.FG_INVALID_INPUT, "not a JSON object"),
    }
}
