//! Hostile plugins are contained: each is stopped with a typed error, and the host (and the
//! same instance, rebuilt) goes on serving normal events afterwards.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use flowgate::event::{self, Event};
use flowgate::runtime::{CallErrorKind, Interrupt, Limits, Runtime, RuntimeConfig, StageInstance};
use flowgate_tests::plugins::{
    HOSTILE_CHATTY, HOSTILE_EXIT, HOSTILE_FLOOD, HOSTILE_INIT_TRAP, HOSTILE_LOOP, HOSTILE_MEMORY,
    HOSTILE_RECURSE, HOSTILE_RESULT, HOSTILE_SELECT, HOSTILE_SLEEP, HOSTILE_TRAP_ON, UPPERCASE,
};
use flowgate_tests::{runtime, test_config, text};

use crate::pipeline::{Fixture, eventually, sigterm, wait_exit};

/// What a loaded machine may add to a deadline before the stopped call returns (a thread can
/// wait that long for a core at a load of 10 on 2 cores). On an idle machine a call ends within
/// two epoch ticks of its deadline; the tests print what they saw.
const LOAD_SLACK: Duration = Duration::from_millis(1_000);

fn instance(rt: &Runtime, plugin: &str, limits: Limits, config: &[(&str, &str)]) -> StageInstance {
    let config = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    rt.load_file(plugin.as_ref())
        .unwrap()
        .instantiate(limits, config)
        .unwrap()
}

/// The host still runs a normal plugin correctly.
fn host_still_serves(rt: &Runtime) {
    let mut up = instance(rt, UPPERCASE, Limits::default(), &[]);
    let out = up.on_event(&text("still alive", 1)).unwrap();
    assert_eq!(out[0].value, b"STILL ALIVE");
}

#[test]
fn infinite_loop_is_stopped_at_the_deadline() {
    let tick = Duration::from_millis(20);
    let deadline = Duration::from_millis(100);
    let rt = Runtime::new(RuntimeConfig {
        epoch_tick: tick,
        ..test_config()
    })
    .unwrap();
    let limits = Limits {
        call_timeout: deadline,
        ..Limits::default()
    };
    let mut looping = instance(&rt, HOSTILE_LOOP, limits, &[]);
    for _ in 0..3 {
        let started = Instant::now();
        let err = looping.on_event(&text("x", 1)).unwrap_err();
        let took = started.elapsed();
        assert_eq!(err.kind, CallErrorKind::Timeout { limit: deadline });
        assert!(took >= deadline, "stopped early: {took:?}");
        assert!(
            took <= deadline + 2 * tick + LOAD_SLACK,
            "stopped late: {took:?}"
        );
        assert!(err.to_string().contains("time limit of 100 ms"), "{err}");
    }
    // The batch path too: it gives up after three timed-out rows instead of one per row.
    let batch = event::batch_of(&vec![text("x", 1); 50]);
    let started = Instant::now();
    let err = looping.process_batch(&batch).unwrap_err();
    assert!(matches!(err.kind, CallErrorKind::Timeout { .. }));
    assert!(
        started.elapsed() < deadline * 6 + LOAD_SLACK,
        "{:?}",
        started.elapsed()
    );
    host_still_serves(&rt);
}

#[test]
fn memory_cap_holds_exactly() {
    let rt = runtime();
    let cap = 16 << 20;
    let limits = Limits {
        memory_bytes: cap,
        ..Limits::default()
    };
    let mut probe = instance(&rt, HOSTILE_MEMORY, limits.clone(), &[("mode", "probe")]);
    let out = probe.on_event(&text("grow", 1)).unwrap();
    assert_eq!(String::from_utf8_lossy(&out[0].value), cap.to_string());

    let mut hog = instance(&rt, HOSTILE_MEMORY, limits, &[("mode", "alloc")]);
    let err = hog.on_event(&text("grow", 1)).unwrap_err();
    let CallErrorKind::MemoryLimit { cap: c, requested } = err.kind else {
        panic!("expected a memory-limit error, got {err}");
    };
    assert_eq!(c, cap);
    assert!(requested > cap);
    assert!(
        err.to_string().contains("memory cap of 16777216 bytes"),
        "{err}"
    );
    host_still_serves(&rt);
}

#[test]
fn unbounded_recursion_traps_as_stack_overflow() {
    let rt = runtime();
    let mut deep = instance(&rt, HOSTILE_RECURSE, Limits::default(), &[]);
    let err = deep.on_event(&text("down", 1)).unwrap_err();
    assert_eq!(err.kind, CallErrorKind::StackOverflow, "{err}");
    assert!(err.is_trap());
    host_still_serves(&rt);
}

#[test]
fn trap_in_init_is_reported_with_its_message() {
    let rt = runtime();
    let plugin = rt.load_file(HOSTILE_INIT_TRAP.as_ref()).unwrap();
    let err = plugin
        .instantiate(Limits::default(), Vec::new())
        .unwrap_err();
    assert!(matches!(err.kind, CallErrorKind::Trap { .. }), "{err}");
    assert!(
        err.stderr
            .contains("init refused: this fixture always traps in init"),
        "the panic message should be in the error: {err}"
    );
    assert!(err.to_string().contains("init refused"));
    host_still_serves(&rt);
}

#[test]
fn trap_on_one_event_fails_that_event_only() {
    let rt = runtime();
    let mut inst = instance(
        &rt,
        HOSTILE_TRAP_ON,
        Limits::default(),
        &[("poison", "bad")],
    );
    let inputs: Vec<Event> = ["a", "bad", "c", "bad", "e"]
        .iter()
        .enumerate()
        .map(|(i, v)| text(v, i as i64))
        .collect();

    // Per event: the trapping events fail, the instance is rebuilt, the others pass.
    let mut ok = Vec::new();
    for (i, e) in inputs.iter().enumerate() {
        match inst.on_event(e) {
            Ok(out) => ok.push(String::from_utf8(out[0].value.clone()).unwrap()),
            Err(err) => {
                assert!(matches!(err.kind, CallErrorKind::Trap { .. }), "{err}");
                assert!(err.stderr.contains("poisoned event: bad"), "{err}");
                assert!(i == 1 || i == 3);
            }
        }
    }
    assert_eq!(ok, ["a", "c", "e"]);
    assert_eq!(inst.restarts(), 2);

    // Per batch: the batch traps, is replayed event by event, and only rows 1 and 3 fail.
    let out = inst.process_batch(&event::batch_of(&inputs)).unwrap();
    let rows: Vec<u32> = out.failures.iter().map(|f| f.row).collect();
    assert_eq!(rows, [1, 3]);
    assert_eq!(out.origins, [0, 2, 4]);
    let values: Vec<&[u8]> = event::columns(&out.output)
        .unwrap()
        .rows()
        .map(|r| r.value)
        .collect();
    assert_eq!(values, [&b"a"[..], b"c", b"e"]);
    host_still_serves(&rt);
}

/// The message of the `BadOutput` error `process_batch` returns for `forge`, or a failure
/// naming what came back instead.
fn forged(inst: &mut StageInstance, forge: &str, inputs: &[Event]) -> String {
    match inst.process_batch(&event::batch_of(inputs)) {
        Err(e) => match e.kind {
            CallErrorKind::BadOutput { message } => message,
            other => panic!("{forge}: {other:?}"),
        },
        Ok(out) => panic!(
            "{forge}: taken, with origins {:?} and failures {:?}",
            out.origins,
            out.failures.iter().map(|f| f.row).collect::<Vec<_>>()
        ),
    }
}

#[test]
fn a_forged_filter_selection_is_refused_with_the_rule_it_breaks() {
    let rt = runtime();
    let inputs: Vec<Event> = (0..4).map(|i| text(&format!("e{i}"), i)).collect();
    for (forge, expected) in [
        (
            "unordered",
            "kept rows must be increasing input rows below 4",
        ),
        (
            "repeated-kept",
            "kept rows must be increasing input rows below 4",
        ),
        (
            "kept-out-of-range",
            "kept rows must be increasing input rows below 4",
        ),
        ("failure-out-of-range", "failure names row 4 of 4"),
        ("failure-kept", "failure names row 0, which is kept"),
        ("failure-twice", "failure names row 0 twice"),
    ] {
        let mut inst = instance(&rt, HOSTILE_SELECT, Limits::default(), &[("forge", forge)]);
        assert_eq!(forged(&mut inst, forge, &inputs), expected, "{forge}");
        // Not a trap: the same instance goes on, and its per-event path keeps each event.
        assert_eq!(inst.restarts(), 0, "{forge}");
        let out = inst.on_event(&inputs[2]).unwrap();
        assert_eq!(out.len(), 1, "{forge}");
        assert_eq!(out[0].value, b"e2", "{forge}");
    }
    host_still_serves(&rt);
}

#[test]
fn a_forged_stage_result_is_refused_and_failures_in_any_order_count_once() {
    let rt = runtime();
    let inputs: Vec<Event> = (0..4).map(|i| text(&format!("e{i}"), i)).collect();
    for (forge, expected) in [
        ("failure-twice", "failure names row 0 twice"),
        (
            "failure-with-output",
            "failure names row 0, which has outputs",
        ),
        ("failure-out-of-range", "failure names row 4 of 4"),
        (
            "origins-decreasing",
            "origins must be non-decreasing input rows below 4",
        ),
    ] {
        let mut inst = instance(&rt, HOSTILE_RESULT, Limits::default(), &[("forge", forge)]);
        assert_eq!(forged(&mut inst, forge, &inputs), expected, "{forge}");
        assert_eq!(inst.restarts(), 0, "{forge}");
    }
    // A refused result keeps none of the batch's state writes.
    let mut inst = instance(
        &rt,
        HOSTILE_RESULT,
        Limits::default(),
        &[("forge", "state-then-failure-twice")],
    );
    let state = flowgate::state::SharedState::new(1 << 20);
    inst.attach_state(state.clone());
    assert_eq!(
        forged(&mut inst, "state-then-failure-twice", &inputs),
        "failure names row 0 twice"
    );
    assert_eq!(state.lock().get(b"forged"), None);
    // Failures out of row order keep the contract: each row fails once, in row order.
    let mut inst = instance(
        &rt,
        HOSTILE_RESULT,
        Limits::default(),
        &[("forge", "unordered-failures")],
    );
    let out = inst.process_batch(&event::batch_of(&inputs)).unwrap();
    let rows: Vec<u32> = out.failures.iter().map(|f| f.row).collect();
    assert_eq!(rows, [0, 1]);
    assert_eq!(out.origins, [2, 3]);
    assert_eq!(values(&out.output), ["e2", "e3"]);
    host_still_serves(&rt);
}

#[test]
fn output_flood_is_stopped_by_the_per_call_caps() {
    let rt = runtime();
    // A generous time limit: the caps must stop the flood, not the clock of a loaded machine.
    let limits = Limits {
        max_outputs_per_event: 1_000,
        call_timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let mut flood = instance(&rt, HOSTILE_FLOOD, limits.clone(), &[("count", "2000")]);
    let err = flood.on_event(&text("x", 1)).unwrap_err();
    assert!(
        matches!(err.kind, CallErrorKind::OutputLimit { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("2000 events from one input event; the limit is 1000"),
        "{err}"
    );
    // Within the cap it works.
    let mut fine = instance(&rt, HOSTILE_FLOOD, limits.clone(), &[("count", "1000")]);
    assert_eq!(fine.on_event(&text("x", 1)).unwrap().len(), 1000);

    // The byte cap: 500 copies of a 64 KiB value is 32 MiB, over a 1 MiB cap.
    let bytes = Limits {
        max_output_bytes: 1 << 20,
        ..limits.clone()
    };
    let mut big = instance(&rt, HOSTILE_FLOOD, bytes, &[("count", "500")]);
    let err = big.on_event(&text(&"y".repeat(64 << 10), 1)).unwrap_err();
    assert!(err.to_string().contains("`max-output-bytes`"), "{err}");

    // The default flood (a million copies) runs into the memory cap instead.
    let mut huge = instance(&rt, HOSTILE_FLOOD, limits, &[]);
    let err = huge.on_event(&text("some bytes", 1)).unwrap_err();
    assert!(
        matches!(err.kind, CallErrorKind::MemoryLimit { .. }),
        "{err}"
    );
    host_still_serves(&rt);
}

/// Values of a batch's output rows, as text.
fn values(batch: &event::Batch) -> Vec<String> {
    event::columns(batch)
        .unwrap()
        .rows()
        .map(|r| String::from_utf8_lossy(r.value).into_owned())
        .collect()
}

/// `flowgate plugin test <plugin> -i - <args>` on `stdin`, and how long it took.
fn plugin_test(plugin: &str, args: &[&str], stdin: &str) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowgate-under-test"))
        .args(["plugin", "test", plugin, "-i", "-"])
        .args(args)
        .env(
            "FLOWGATE_CACHE_DIR",
            flowgate_tests::target_dir().join("flowgate-test-cache"),
        )
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (out, started.elapsed())
}

#[test]
fn a_plugin_blocked_in_a_host_call_is_stopped_at_its_deadline() {
    let tick = Duration::from_millis(50);
    let deadline = Duration::from_millis(200);
    let rt = Runtime::new(RuntimeConfig {
        epoch_tick: tick,
        ..test_config()
    })
    .unwrap();
    let limits = Limits {
        call_timeout: deadline,
        ..Limits::default()
    };
    // Each way a plugin can wait in WASI: a timed pause of its thread, subscribe-duration + block,
    // subscribe-instant + poll.
    for how in ["sleep", "block", "poll"] {
        let mut sleepy = instance(&rt, HOSTILE_SLEEP, limits.clone(), &[("how", how)]);
        for _ in 0..3 {
            let started = Instant::now();
            let err = sleepy.on_event(&text("x", 1)).unwrap_err();
            let took = started.elapsed();
            assert_eq!(
                err.kind,
                CallErrorKind::Timeout { limit: deadline },
                "{how}: {err}"
            );
            assert!(took >= deadline, "{how}: stopped early: {took:?}");
            assert!(
                took <= deadline + 2 * tick + LOAD_SLACK,
                "{how}: stopped late: {took:?}"
            );
            assert!(err.stderr.contains("sleeping 30000 ms"), "{err}");
        }
        // One batch call: stopped at the deadline too.
        let batch = event::batch_of(&[text("x", 1), text("y", 2), text("z", 3)]);
        let started = Instant::now();
        let err = sleepy.on_batch(&batch).unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(err.kind, CallErrorKind::Timeout { .. }),
            "{how}: {err}"
        );
        assert!(
            took <= deadline + 2 * tick + LOAD_SLACK,
            "{how}: batch stopped late: {took:?}"
        );
        // The batch with its replay: the batch and three rows, each stopped at the deadline
        // (and each row on a rebuilt instance).
        let started = Instant::now();
        let err = sleepy.process_batch(&batch).unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(err.kind, CallErrorKind::Timeout { .. }),
            "{how}: {err}"
        );
        assert!(
            took <= 4 * deadline + Duration::from_secs(1) + LOAD_SLACK,
            "{how}: replay took {took:?}"
        );
        // The same instance, rebuilt, serves an event that does not sleep.
        let out = sleepy.on_event(&text("awake", 1)).unwrap();
        assert_eq!(out[0].value, b"awake");
    }
    // Stdin is an empty stream: a blocking read returns at once.
    let mut reader = instance(&rt, HOSTILE_SLEEP, limits, &[("how", "stdin")]);
    let started = Instant::now();
    let out = reader.on_event(&text("read", 1)).unwrap();
    assert_eq!(out[0].value, b"read");
    assert!(
        started.elapsed() < deadline + LOAD_SLACK,
        "{:?}",
        started.elapsed()
    );
    host_still_serves(&rt);
}

#[test]
fn an_interrupt_stops_a_call_in_flight_long_before_its_time_limit() {
    let rt = runtime();
    let limits = Limits {
        call_timeout: Duration::from_secs(60),
        ..Limits::default()
    };
    // A plugin waiting in a host call, and one running guest code.
    for plugin in [HOSTILE_SLEEP, HOSTILE_LOOP] {
        let mut inst = instance(&rt, plugin, limits.clone(), &[("ms", "60000")]);
        let interrupt = Interrupt::new();
        inst.attach_stage("stage", interrupt.clone());
        let started = Instant::now();
        let call = std::thread::spawn(move || {
            let result = inst.on_event(&text("x", 1));
            (result, inst)
        });
        // The interrupt comes 300 ms in, whether or not the call has begun by then.
        let at = started + Duration::from_millis(300);
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        interrupt.interrupt();
        let interrupted = Instant::now();
        let (result, mut inst) = call.join().unwrap();
        let err = result.unwrap_err();
        assert_eq!(err.kind, CallErrorKind::Interrupted, "{err}");
        assert!(!err.is_trap(), "an interrupt is not the plugin's fault");
        assert!(
            interrupted.elapsed() < Duration::from_millis(100) + LOAD_SLACK,
            "the call went on {:?} after the interrupt",
            interrupted.elapsed()
        );
        assert!(
            err.to_string().contains("the host is shutting down"),
            "{err}"
        );
        // Later calls are refused at once.
        let err = inst.on_event(&text("awake", 1)).unwrap_err();
        assert_eq!(err.kind, CallErrorKind::Interrupted);
    }
    host_still_serves(&rt);
}

#[test]
fn sigterm_ends_a_run_within_its_grace_while_a_plugin_sleeps_in_a_call() {
    let f = Fixture::new(&format!(
        r#"
[sources.gen]
type = "generator"
topic = "raw"
count = 3

[stages.sleepy]
plugin = "{HOSTILE_SLEEP}"
input = "raw"
output = "out"
mode = "event"
timeout = "30s"
config = {{ ms = 60000 }}

[sinks.print]
type = "stdout"
input = "out"
"#
    ));
    let mut child = f.spawn(&["--grace", "2s", "--no-watch"], 0);
    let sleeping = eventually(Duration::from_secs(60), || {
        f.stderr(0).contains("sleeping 60000 ms")
    });
    assert!(
        sleeping,
        "the plugin never started its call: {}",
        f.stderr(0)
    );
    let asked = Instant::now();
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(40)).expect("exit after SIGTERM");
    let took = asked.elapsed();
    let log = f.stderr(0);
    assert!(
        took < Duration::from_secs(2),
        "took {took:?} after SIGTERM: {log}"
    );
    assert!(status.success(), "{status}: {log}");
    assert!(
        log.contains("interrupting the plugin calls still running"),
        "{log}"
    );
    assert!(!log.contains("still busy"), "{log}");
}

#[test]
#[expect(
    clippy::print_stderr,
    reason = "reports the log bytes the budget let through (see it with --nocapture)"
)]
fn plugin_log_output_is_held_to_its_budget() {
    // Through the command: three events, each writing 10 MB to stderr in 1,000-byte lines.
    let events = "{\"value\":\"a\"}\n{\"value\":\"b\"}\n{\"value\":\"c\"}\n";
    let (out, took) = plugin_test(HOSTILE_CHATTY, &["--mode", "event"], events);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = String::from_utf8_lossy(&out.stderr);
    let d = Limits::default();
    let budget = d.log_burst_bytes as f64 + d.log_bytes_per_second as f64 * took.as_secs_f64();
    // Each line logged carries a timestamp, the level and the plugin's name (< 10% more), and
    // the report of the dropped lines is a line of its own.
    let cap = (budget * 1.1) as usize + 4096;
    assert!(
        out.stderr.len() <= cap,
        "{} bytes of log in {took:?}; the budget allows {cap}",
        out.stderr.len()
    );
    let tail = &log[log.len().saturating_sub(2000)..];
    assert!(log.contains("over its log budget: lines dropped"), "{tail}");
    // The last report gives every line dropped: all 30,000 but those the budget took.
    let total: u64 = log
        .rsplit("dropped_total=")
        .next()
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no dropped_total in {tail}"));
    let taken = (budget / 1000.0) as u64 + 1;
    assert!(
        total >= 30_000 - taken && total < 30_000,
        "{total} dropped: {tail}"
    );
    eprintln!(
        "log bytes for 3 events of 10 MB: {} in {took:?}",
        out.stderr.len()
    );

    // In the library, with the limits given: stdout and the log import share the bucket.
    let rt = runtime();
    let limits = Limits {
        log_bytes_per_second: 0,
        log_burst_bytes: 10_000,
        // Taking the writes is host work inside the call, slow in a debug build.
        call_timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    for to in ["stdout", "log", "stderr"] {
        let config = [("to", to), ("bytes", "1000000")];
        let mut chatty = instance(&rt, HOSTILE_CHATTY, limits.clone(), &config);
        for _ in 0..3 {
            chatty.on_event(&text("x", 1)).unwrap();
        }
        // 3,000 lines of 1,000 bytes (with the newline); the burst takes 10.
        assert_eq!(chatty.log_dropped(), 2_990, "{to}");
    }
}

#[test]
fn exit_fails_its_event_only_per_event_and_per_batch() {
    let rt = runtime();
    let mut inst = instance(&rt, HOSTILE_EXIT, Limits::default(), &[("marker", "bye")]);
    let inputs = [text("a", 1), text("b-bye", 2), text("c", 3)];

    // Per event: the exiting event fails with the exit, the instance is rebuilt.
    let mut ok = Vec::new();
    for (i, e) in inputs.iter().enumerate() {
        match inst.on_event(e) {
            Ok(out) => ok.push(String::from_utf8(out[0].value.clone()).unwrap()),
            Err(err) => {
                assert_eq!(i, 1);
                assert_eq!(err.kind, CallErrorKind::Exited { code: 1 }, "{err}");
                assert!(err.is_trap());
                assert!(
                    err.to_string().contains("called exit with status 1"),
                    "{err}"
                );
            }
        }
    }
    assert_eq!(ok, ["a", "c"]);
    assert_eq!(inst.restarts(), 1);

    // Per batch: the batch is replayed event by event and only row 1 fails.
    let out = inst.process_batch(&event::batch_of(&inputs)).unwrap();
    assert_eq!(out.failures.len(), 1);
    assert_eq!(out.failures[0].row, 1);
    assert_eq!(
        out.failures[0].error.kind,
        CallErrorKind::Exited { code: 1 }
    );
    assert_eq!(out.origins, [0, 2]);
    assert_eq!(values(&out.output), ["a", "c"]);

    // `flowgate plugin test`, both modes: one failed row, named as an exit; the others pass.
    let events = "{\"value\":\"a\"}\n{\"value\":\"b-exit\"}\n{\"value\":\"c\"}\n";
    for mode in ["event", "batch"] {
        let (out, _) = plugin_test(HOSTILE_EXIT, &["--mode", mode], events);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{mode}: {stderr}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let printed: Vec<&str> = stdout.lines().collect();
        assert_eq!(printed.len(), 2, "{mode}: {stdout}");
        assert!(
            printed[0].contains("\"a\"") && printed[1].contains("\"c\""),
            "{stdout}"
        );
        assert!(
            stderr.contains("row 1: plugin `hostile_exit`: called exit with status 1"),
            "{mode}: {stderr}"
        );
        assert!(stderr.contains("1 of 3 events failed"), "{mode}: {stderr}");
    }
    host_still_serves(&rt);
}

#[test]
fn a_stage_sets_its_plugin_log_budget_in_the_pipeline_file() {
    // Three events of 1 MB of stderr each, under a budget of 8 KiB at once and 1 KiB/s.
    let f = Fixture::new(&format!(
        r#"
[sources.file]
type = "file"
path = "in.ndjson"
topic = "raw"

[stages.chatty]
plugin = "{HOSTILE_CHATTY}"
input = "raw"
output = "out"
mode = "event"
timeout = "30s"
max-log-rate = "1KiB"
max-log-burst = "8KiB"
config = {{ bytes = "1000000" }}
"#
    ));
    std::fs::write(
        f.path("in.ndjson"),
        "{\"value\":\"a\"}\n{\"value\":\"b\"}\n{\"value\":\"c\"}\n",
    )
    .unwrap();
    let started = Instant::now();
    let (status, stderr) = f.run_bounded();
    let took = started.elapsed();
    assert!(status.success(), "{stderr}");
    let plugin_lines = stderr.lines().filter(|l| l.contains("xxxxxxxxxx")).count();
    // Lines of 1,000 bytes: the burst takes 8, the rate about one a second.
    let allowed = 8 + took.as_secs() as usize + 1;
    assert!(
        (1..=allowed).contains(&plugin_lines),
        "{plugin_lines} plugin lines logged in {took:?}, the budget allows {allowed}"
    );
    assert!(
        stderr.contains("over its log budget: lines dropped"),
        "{}",
        &stderr[stderr.len().saturating_sub(2000)..]
    );
}
