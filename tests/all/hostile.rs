//! Hostile plugins are contained: each is stopped with a typed error, and the host (and the
//! same instance, rebuilt) goes on serving normal events afterwards.

use std::time::{Duration, Instant};

use flowgate::event::{self, Event};
use flowgate::runtime::{CallErrorKind, Limits, Runtime, RuntimeConfig, StageInstance};
use flowgate_tests::plugins::{
    HOSTILE_FLOOD, HOSTILE_INIT_TRAP, HOSTILE_LOOP, HOSTILE_MEMORY, HOSTILE_RECURSE,
    HOSTILE_TRAP_ON, UPPERCASE,
};
use flowgate_tests::{runtime, test_config, text};

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
fn infinite_loop_is_stopped_within_the_deadline_plus_two_ticks() {
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
        assert!(took <= deadline + 2 * tick, "stopped late: {took:?}");
        assert!(err.to_string().contains("time limit of 100 ms"), "{err}");
    }
    // The batch path too: it gives up after three timed-out rows instead of one per row.
    let batch = event::batch_of(&vec![text("x", 1); 50]);
    let started = Instant::now();
    let err = looping.process_batch(&batch).unwrap_err();
    assert!(matches!(err.kind, CallErrorKind::Timeout { .. }));
    assert!(started.elapsed() < deadline * 6, "{:?}", started.elapsed());
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

#[test]
fn output_flood_is_stopped_by_the_per_call_caps() {
    let rt = runtime();
    let limits = Limits {
        max_outputs_per_event: 1_000,
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
        ..limits
    };
    let mut big = instance(&rt, HOSTILE_FLOOD, bytes, &[("count", "500")]);
    let err = big.on_event(&text(&"y".repeat(64 << 10), 1)).unwrap_err();
    assert!(err.to_string().contains("`max-output-bytes`"), "{err}");

    // The default flood (a million copies) runs into the memory cap instead.
    let mut huge = instance(&rt, HOSTILE_FLOOD, Limits::default(), &[]);
    let err = huge.on_event(&text("some bytes", 1)).unwrap_err();
    assert!(
        matches!(err.kind, CallErrorKind::MemoryLimit { .. }),
        "{err}"
    );
    host_still_serves(&rt);
}
