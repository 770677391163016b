//! An aggregator in Zig: per key and window, the count and the sum of the events' values, which
//! are integers written as text (`-?[0-9]{1,18}`); any other value fails with invalid-input (to
//! the dead-letter topic). Each window's result is `{"count":…,"sum":…}`.
//! Build: `flowgate plugin build`; check: `flowgate plugin test` (windows as `[test]` in
//! flowgate.toml says).
//!
//! The host assigns events to windows (the stage's `window` in the pipeline: tumbling, hopping
//! or session), keeps one accumulator per key and window and calls `fg_agg_finish` when a
//! window is due; `fg_agg_merge` lets session windows that grow into each other become one.
//! `flowgate_c.zig` (the C helper built with FG_AGGREGATOR, as `world = "aggregator"` asks)
//! implements the world around these functions. The accumulator is bytes this file defines:
//! the count and the sum, two little-endian i64. Fail a row with
//! `return fg.fg_fail(err, fg.FG_INVALID_INPUT, "why");`: its accumulator is then put back as
//! it was.
const std = @import("std");
const fg = @import("flowgate_c.zig");

const Acc = extern struct { count: i64 = 0, sum: i64 = 0 };

fn load(p: [*c]const u8, len: usize) ?Acc {
    if (len != @sizeOf(Acc)) return null;
    return std.mem.bytesToValue(Acc, p[0..@sizeOf(Acc)]);
}

const corrupt = "an accumulator is not 16 bytes; was it written by another version of this plugin?";

/// The value as an integer when it is exactly -?[0-9]{1,18}.
fn integer(v: []const u8) ?i64 {
    const digits = if (std.mem.startsWith(u8, v, "-")) v[1..] else v;
    if (digits.len < 1 or digits.len > 18) return null;
    for (digits) |c| if (!std.ascii.isDigit(c)) return null;
    return std.fmt.parseInt(i64, v, 10) catch null;
}

export fn fg_agg_create(acc: *fg.fg_buf) void {
    const zero = Acc{};
    fg.fg_buf_append(acc, &zero, @sizeOf(Acc));
}

export fn fg_agg_add(acc: *fg.fg_buf, e: *const fg.fg_event, err: *fg.fg_error) c_int {
    var a = load(acc.ptr, acc.len) orelse return fg.fg_fail(err, fg.FG_FATAL, corrupt);
    const n = integer(e.value[0..e.value_len]) orelse
        return fg.fg_fail(err, fg.FG_INVALID_INPUT, "not an integer");
    a.count += 1;
    a.sum +%= n;
    @memcpy(acc.ptr[0..@sizeOf(Acc)], std.mem.asBytes(&a));
    return 0;
}

export fn fg_agg_merge(a: [*c]const u8, a_len: usize, b: [*c]const u8, b_len: usize, out: *fg.fg_buf) c_int {
    const x = load(a, a_len) orelse return 1;
    const y = load(b, b_len) orelse return 1;
    const m = Acc{ .count = x.count + y.count, .sum = x.sum +% y.sum };
    fg.fg_buf_append(out, &m, @sizeOf(Acc));
    return 0;
}

export fn fg_agg_finish(p: *const fg.fg_pane, value: *fg.fg_buf, err: *fg.fg_error) c_int {
    const a = load(p.acc, p.acc_len) orelse return fg.fg_fail(err, fg.FG_FATAL, corrupt);
    var text: [64]u8 = undefined;
    const s = std.fmt.bufPrint(&text, "{{\"count\":{d},\"sum\":{d}}}", .{ a.count, a.sum }) catch unreachable;
    fg.fg_buf_append(value, s.ptr, s.len);
    return 0;
}
