//! `Running::apply` on the in-memory log, with plugins built here: a core module written with
//! `wasm-encoder` whose `on-event` returns its event as it is, made a component of the stage
//! world by `build::componentize`. Each test waits for the events it expects, with a deadline.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasm_encoder::{
    CodeSection, ConstExpr, ExportKind, ExportSection, Function, FunctionSection, GlobalSection,
    GlobalType, MemArg, MemorySection, MemoryType, Module, TypeSection, ValType,
};

use super::{PipelineConfig, Running, StepId};
use crate::event::{self, Event};
use crate::flow::Ctl;
use crate::log::{EventLog, MemoryLog};
use crate::runtime::{Runtime, RuntimeConfig};

/// Where `on-event` writes the event it returns (40 bytes, aligned to 8).
const EVENT_AT: i32 = 1024;
/// Where `on-event` writes its result: ok, a list of one event.
const RESULT_AT: i32 = 1088;
/// Zeros, never written: `init`'s result (ok) and `on-batch`'s (ok, nothing out).
const ZEROS_AT: i32 = 2048;
/// Where the allocator starts handing out memory.
const HEAP_AT: i32 = 4096;
/// The locals of a function that has none.
const NO_LOCALS: [(u32, ValType); 0] = [];

fn mem(offset: u64, align: u32) -> MemArg {
    MemArg {
        offset,
        align,
        memory_index: 0,
    }
}

/// A stage plugin whose `on-event` returns its event unchanged. `version` changes the bytes
/// (where its heap starts), not what it does.
fn identity_plugin(version: u8) -> Vec<u8> {
    use ValType::{I32, I64};
    let mut types = TypeSection::new();
    // 0: cabi_realloc(old, old_size, align, new_size) -> ptr
    types.ty().function([I32, I32, I32, I32], [I32]);
    // 1: init(config ptr, len) -> result ptr
    types.ty().function([I32, I32], [I32]);
    // 2: on-event(key tag, key ptr, key len, value ptr, value len, timestamp, headers ptr,
    //    headers len) -> result ptr
    types
        .ty()
        .function([I32, I32, I32, I32, I32, I64, I32, I32], [I32]);
    // 3: on-batch(batch ptr) -> result ptr
    types.ty().function([I32], [I32]);

    let mut functions = FunctionSection::new();
    for ty in 0..4 {
        functions.function(ty);
    }
    let mut memory = MemorySection::new();
    memory.memory(MemoryType {
        minimum: 1,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    let mut globals = GlobalSection::new();
    globals.global(
        GlobalType {
            val_type: I32,
            mutable: true,
            shared: false,
        },
        &ConstExpr::i32_const(HEAP_AT + 8 * i32::from(version)),
    );
    let mut exports = ExportSection::new();
    exports.export("memory", ExportKind::Memory, 0);
    for (i, name) in ["cabi_realloc", "init", "on-event", "on-batch"]
        .into_iter()
        .enumerate()
    {
        exports.export(name, ExportKind::Func, i as u32);
    }

    let mut code = CodeSection::new();
    // A bump allocator: aligns the heap, hands out `new_size` bytes, grows the memory when
    // they pass its end.
    let mut realloc = Function::new([(1, I32)]);
    realloc
        .instructions()
        .global_get(0)
        .local_get(2)
        .i32_add()
        .i32_const(1)
        .i32_sub()
        .i32_const(0)
        .local_get(2)
        .i32_sub()
        .i32_and()
        .local_tee(4)
        .local_get(3)
        .i32_add()
        .global_set(0)
        .global_get(0)
        .memory_size(0)
        .i32_const(16)
        .i32_shl()
        .i32_gt_u()
        .if_(wasm_encoder::BlockType::Empty)
        .local_get(3)
        .i32_const(16)
        .i32_shr_u()
        .i32_const(1)
        .i32_add()
        .memory_grow(0)
        .drop()
        .end()
        .local_get(4)
        .end();
    code.function(&realloc);
    let mut init = Function::new(NO_LOCALS);
    init.instructions().i32_const(ZEROS_AT).end();
    code.function(&init);
    // The event record: key option (tag, ptr, len) at 0, value at 12, timestamp at 24,
    // headers at 32; the result: tag 0 (ok) at 0, the list (ptr, len) at 4.
    let mut on_event = Function::new(NO_LOCALS);
    let mut sink = on_event.instructions();
    sink.i32_const(EVENT_AT).local_get(0).i32_store8(mem(0, 0));
    for (param, offset) in [(1, 4), (2, 8), (3, 12), (4, 16), (6, 32), (7, 36)] {
        sink.i32_const(EVENT_AT)
            .local_get(param)
            .i32_store(mem(offset, 2));
    }
    sink.i32_const(EVENT_AT).local_get(5).i64_store(mem(24, 3));
    sink.i32_const(RESULT_AT).i32_const(0).i32_store8(mem(0, 0));
    sink.i32_const(RESULT_AT)
        .i32_const(EVENT_AT)
        .i32_store(mem(4, 2));
    sink.i32_const(RESULT_AT).i32_const(1).i32_store(mem(8, 2));
    sink.i32_const(RESULT_AT).end();
    code.function(&on_event);
    let mut on_batch = Function::new(NO_LOCALS);
    on_batch.instructions().i32_const(ZEROS_AT).end();
    code.function(&on_batch);

    let mut module = Module::new();
    module
        .section(&types)
        .section(&functions)
        .section(&memory)
        .section(&globals)
        .section(&exports)
        .section(&code);
    crate::build::componentize(&module.finish(), "stage").expect("a stage component")
}

/// The pipeline `in` → stage `a` → `mid` → stage `b` → `out` (or without `b`), each stage
/// per event, in `dir`.
fn pipeline(dir: &Path, with_b: bool) -> PipelineConfig {
    PipelineConfig::parse(&dir.join("p.toml"), &pipeline_text(with_b)).expect("a valid pipeline")
}

/// The text of [`pipeline`].
fn pipeline_text(with_b: bool) -> String {
    let mut text = String::from(
        r#"
[topics.in]
external = true
partitions = 1

[topics.mid]
partitions = 1

[topics.out]
partitions = 1

[stages.a]
plugin = "a.wasm"
input = "in"
output = "mid"
mode = "event"
"#,
    );
    if with_b {
        text.push_str(
            r#"
[stages.b]
plugin = "b.wasm"
input = "mid"
output = "out"
mode = "event"
"#,
        );
    }
    text
}

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: None,
        max_stage_instances: 32,
        max_memory_bytes: 64 << 20,
        ..RuntimeConfig::default()
    })
    .expect("a runtime")
}

/// Appends events `from..to` (values `e<i>`) to `in`.
fn send(log: &MemoryLog, from: u32, to: u32) {
    let events: Vec<Event> = (from..to)
        .map(|i| Event {
            key: None,
            value: format!("e{i}").into_bytes(),
            timestamp: i64::from(i),
            headers: Vec::new(),
        })
        .collect();
    log.append("in", 0, event::batch_of(&events))
        .expect("appended");
}

/// The values in `topic`, once it holds `n` events (panics past a deadline).
fn values(log: &MemoryLog, topic: &str, n: u64) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !log
        .wait_for(topic, 0, n - 1, Duration::from_millis(100))
        .expect("the topic exists")
    {
        assert!(
            Instant::now() < deadline,
            "`{topic}` did not reach {n} events"
        );
    }
    let mut out = Vec::new();
    for rb in log.read(topic, 0, 0, usize::MAX).expect("read") {
        let cols = event::columns(&rb.batch).expect("a valid batch");
        out.extend(
            cols.rows()
                .map(|r| String::from_utf8_lossy(r.value).into_owned()),
        );
    }
    out
}

fn expected(from: u32, to: u32) -> Vec<String> {
    (from..to).map(|i| format!("e{i}")).collect()
}

/// Steps, each with whether its threads are still running.
fn steps(running: &Running) -> BTreeMap<StepId, bool> {
    running
        .applied()
        .steps
        .iter()
        .map(|(id, step)| (id.clone(), !step.finished()))
        .collect()
}

fn stage(name: &str) -> StepId {
    StepId::Stage(name.to_owned())
}

/// A pipeline of stages `a` and `b` started by one apply on an empty one, its plugin files in a
/// temporary directory.
struct Fixture {
    dir: tempfile::TempDir,
    log: Arc<MemoryLog>,
    running: Arc<Running>,
}

impl Fixture {
    fn started() -> Fixture {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(dir.path().join("a.wasm"), identity_plugin(1)).expect("a.wasm");
        std::fs::write(dir.path().join("b.wasm"), identity_plugin(1)).expect("b.wasm");
        let log = Arc::new(MemoryLog::new());
        let ctl = Arc::new(Ctl::new(false, BTreeMap::new(), BTreeMap::new()));
        let running = Running::empty(ctl, log.clone(), &runtime());
        let done = running.apply(pipeline(dir.path(), true)).expect("applied");
        assert_eq!(done, ["started stage `a`", "started stage `b`"]);
        Fixture { dir, log, running }
    }

    /// Applies the pipeline again, with or without `b`.
    fn apply(&self, with_b: bool) -> Result<Vec<String>, super::ApplyError> {
        self.running.apply(pipeline(self.dir.path(), with_b))
    }

    /// Stops the pipeline; it must not have failed.
    fn finish(self) {
        self.running.stop();
        let summary = self.running.wait(Duration::from_secs(10));
        assert_eq!(summary.failure, None);
    }
}

/// Waits until a worker of `slot`'s stage runs `version`.
fn swapped(slot: &crate::reload::StageSlot, version: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !slot
        .history()
        .iter()
        .any(|r| r.id == version && r.live_after_ms.is_some())
    {
        assert!(
            Instant::now() < deadline,
            "no worker of `{}` swapped to version {version}: {:?}",
            slot.stage,
            slot.history()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_first_apply_starts_every_step() {
    let f = Fixture::started();
    assert_eq!(
        steps(&f.running),
        BTreeMap::from([(stage("a"), true), (stage("b"), true)])
    );
    send(&f.log, 0, 5);
    assert_eq!(values(&f.log, "out", 5), expected(0, 5));
    f.finish();
}

#[test]
fn a_plugin_only_edit_deploys_to_that_stage_and_restarts_nothing() {
    let f = Fixture::started();
    send(&f.log, 0, 5);
    assert_eq!(values(&f.log, "out", 5), expected(0, 5));
    let slot_a = f.running.slot("a").expect("a's slot");
    let slot_b = f.running.slot("b").expect("b's slot");
    let (version_a, version_b) = (slot_a.current().id, slot_b.current().id);

    std::fs::write(f.dir.path().join("b.wasm"), identity_plugin(2)).expect("b.wasm");
    let done = f.apply(true).expect("applied");
    let version = slot_b.current().id;
    assert_ne!(version, version_b);
    assert_eq!(done, [format!("stage `b`: plugin version {version}")]);
    // The same slots (a restart makes new ones), the same running steps; a untouched.
    assert!(Arc::ptr_eq(
        &f.running.slot("a").expect("a's slot"),
        &slot_a
    ));
    assert!(Arc::ptr_eq(
        &f.running.slot("b").expect("b's slot"),
        &slot_b
    ));
    assert_eq!(slot_a.current().id, version_a);
    assert_eq!(
        steps(&f.running),
        BTreeMap::from([(stage("a"), true), (stage("b"), true)])
    );
    // b's worker swaps the new version in at a batch boundary, and events go on through.
    swapped(&slot_b, version);
    send(&f.log, 5, 10);
    assert_eq!(values(&f.log, "out", 10), expected(0, 10));
    f.finish();
}

#[test]
fn a_removed_stage_stops_and_the_rest_keeps_running() {
    let f = Fixture::started();
    let slot_a = f.running.slot("a").expect("a's slot");
    let done = f.apply(false).expect("applied");
    assert_eq!(done, ["stopped stage `b`"]);
    assert!(f.running.slot("b").is_none());
    assert!(Arc::ptr_eq(
        &f.running.slot("a").expect("a's slot"),
        &slot_a
    ));
    assert_eq!(steps(&f.running), BTreeMap::from([(stage("a"), true)]));
    send(&f.log, 0, 3);
    assert_eq!(values(&f.log, "mid", 3), expected(0, 3));
    f.finish();
}

#[test]
fn a_new_plugin_file_that_does_not_load_is_refused_and_the_live_version_keeps_serving() {
    let f = Fixture::started();
    let slot_b = f.running.slot("b").expect("b's slot");
    let live = slot_b.current().id;
    std::fs::write(f.dir.path().join("b.wasm"), b"not a plugin").expect("b.wasm");
    match f.apply(true) {
        Err(super::ApplyError::Refused { refused, applied }) => {
            assert_eq!(refused.len(), 1, "{refused:?}");
            assert!(refused[0].starts_with("stage `b`: "), "{refused:?}");
            assert!(applied.is_empty(), "{applied:?}");
        }
        other => panic!("expected a refused deploy, got {other:?}"),
    }
    assert_eq!(slot_b.current().id, live);
    send(&f.log, 0, 3);
    assert_eq!(values(&f.log, "out", 3), expected(0, 3));
    f.finish();
}

#[test]
fn reload_says_why_it_applied_nothing() {
    use super::{ApplyError, PipelineFileError, ReloadError, reload};
    use crate::flow::with_sources;

    let f = Fixture::started();
    let file = f.dir.path().join("p.toml");
    // The file the pipeline was parsed as was never written.
    match reload(&f.running) {
        Err(ReloadError::File(PipelineFileError::Read { path, .. })) => assert_eq!(path, file),
        other => panic!("expected an unreadable file, got {other:?}"),
    }
    std::fs::write(&file, "naem = 1\n").expect("p.toml");
    match reload(&f.running) {
        Err(e @ ReloadError::File(PipelineFileError::Problems(_))) => {
            assert!(with_sources(&e).contains("has 1 problem"), "{e}");
        }
        other => panic!("expected problems, got {other:?}"),
    }
    // A plugin file that does not load: refused, with the cause in the text.
    std::fs::write(&file, pipeline_text(true)).expect("p.toml");
    std::fs::write(f.dir.path().join("b.wasm"), b"not a plugin").expect("b.wasm");
    match reload(&f.running) {
        Err(e @ ReloadError::Apply(ApplyError::Refused { .. })) => {
            assert!(with_sources(&e).starts_with("stage `b`: "), "{e}");
        }
        other => panic!("expected a refused deploy, got {other:?}"),
    }
    assert_eq!(steps(&f.running).len(), 2);
    f.finish();
}
