//! Loading: the compiled-code cache, and clear errors for files that are not stage plugins.

use flowgate::event::{self, Event};
use flowgate::runtime::World;
use flowgate::runtime::{LoadError, Runtime, RuntimeConfig};
use flowgate_tests::plugins::{ALL, CONTAINS, REJECT_BAD, SPLIT};
use flowgate_tests::test_config;

#[test]
fn compiled_code_is_cached_by_content_hash_and_survives_a_bad_entry() {
    let dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        cache_dir: Some(dir.path().to_owned()),
        ..test_config()
    };
    let rt = Runtime::new(config.clone()).unwrap();
    let first = rt.load_file(SPLIT.as_ref()).unwrap();
    assert!(!first.info().from_cache);
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert_eq!(entries.len(), 1);
    let name = entries[0].file_name().to_string_lossy().into_owned();
    assert!(name.starts_with(&first.info().hash), "{name}");

    let again = Runtime::new(config.clone()).unwrap();
    let second = again.load_file(SPLIT.as_ref()).unwrap();
    assert!(second.info().from_cache);
    assert_eq!(second.info().hash, first.info().hash);

    // A damaged entry is not trusted: the plugin is compiled anew and works.
    std::fs::write(entries[0].path(), b"garbage").unwrap();
    let third = Runtime::new(config)
        .unwrap()
        .load_file(SPLIT.as_ref())
        .unwrap();
    assert!(!third.info().from_cache);
    let mut inst = third.instantiate(Default::default(), Vec::new()).unwrap();
    let out = inst.on_event(&flowgate_tests::text("a\nb", 1)).unwrap();
    assert_eq!(out.len(), 2);
}

#[test]
fn every_plugin_loads_as_a_stage_filter_or_aggregator_with_no_filesystem_or_network_grant() {
    let rt = flowgate_tests::runtime();
    // The SDK's `filter` attribute builds the filter world (and so does hostile-select, by
    // hand).
    let filters = [
        "contains",
        "dedup",
        "filter-json",
        "hostile-select",
        "json-schema",
        "keep-flag",
        "reject-bad",
    ];
    for (name, path) in ALL {
        let p = rt
            .load_file(path.as_ref())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let exports: &[&str] = if name.starts_with("window-") || *name == "count-sum" {
            assert_eq!(p.info().world, "flowgate:plugin/aggregator@0.1.1");
            &[
                "init (func)",
                "create (func)",
                "add (func)",
                "merge (func)",
                "finish (func)",
            ]
        } else if filters.contains(name) {
            assert_eq!(p.info().world, "flowgate:plugin/filter@0.1.1", "{name}");
            &["init (func)", "keep (func)", "keep-batch (func)"]
        } else {
            assert_eq!(p.info().world, "flowgate:plugin/stage@0.1.1", "{name}");
            &["init (func)", "on-event (func)", "on-batch (func)"]
        };
        // Keyed state is imported only by the plugins that use it.
        let stateful = [
            "state-count",
            "dedup",
            "linear-regression",
            "count-then-fail",
            "hostile-result",
        ]
        .contains(name);
        assert_eq!(p.info().uses_state, stateful, "{name}");
        for export in exports {
            assert!(
                p.info().exports.iter().any(|e| e == export),
                "{name}: {export}"
            );
        }
    }
}

/// Components built against contract 0.1.0 (a filter, and a stage that imports keyed state
/// `@0.1.0`), kept as built then: they load on this host's 0.1.1 and run as they did.
const CONTRACT_0_1_0: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/contract-0.1.0");

#[test]
fn plugins_built_against_contract_0_1_0_keep_working() {
    let rt = flowgate_tests::runtime();
    let old = rt
        .load_file(format!("{CONTRACT_0_1_0}/contains.wasm").as_ref())
        .unwrap();
    assert_eq!(old.info().world, "flowgate:plugin/stage@0.1.0");
    assert_eq!(old.info().kind, World::Stage);
    let new = rt.load_file(CONTAINS.as_ref()).unwrap();
    assert_eq!(new.info().kind, World::Filter);
    let config = vec![("needle".to_owned(), "x".to_owned())];
    let input: Vec<Event> = ["ax", "b", "xx", "", "c", "x"]
        .iter()
        .enumerate()
        .map(|(i, v)| flowgate_tests::text(v, i as i64))
        .collect();
    let batch = event::batch_of(&input);
    let mut outputs = Vec::new();
    for p in [&old, &new] {
        let mut inst = p.instantiate(Default::default(), config.clone()).unwrap();
        let out = inst.on_batch(&batch).unwrap();
        assert_eq!(out.origins, [0, 2, 5], "{}", p.info().world);
        let per_event: Vec<Event> = input
            .iter()
            .flat_map(|e| inst.on_event(e).unwrap())
            .collect();
        assert_eq!(event::batch_of(&per_event), out.output);
        outputs.push(out.output);
    }
    assert_eq!(outputs[0], outputs[1], "the old and new builds agree");

    // Its state import, `flowgate:plugin/state@0.1.0`, links to this host's 0.1.1.
    let counter = rt
        .load_file(format!("{CONTRACT_0_1_0}/state_count.wasm").as_ref())
        .unwrap();
    assert!(counter.info().uses_state);
    assert!(
        counter
            .info()
            .imports
            .iter()
            .any(|i| i.starts_with("flowgate:plugin/state@0.1.0")),
        "{:?}",
        counter.info().imports
    );
    let mut inst = counter.instantiate(Default::default(), Vec::new()).unwrap();
    inst.attach_state(flowgate::state::SharedState::new(1 << 20));
    let mut keyed = flowgate_tests::text("v", 1);
    keyed.key = Some(b"k".to_vec());
    let counts: Vec<Vec<u8>> = (0..3)
        .map(|_| inst.on_event(&keyed).unwrap().remove(0).value)
        .collect();
    assert_eq!(counts, [b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]);
}

#[test]
fn a_filter_returns_kept_rows_and_failures_and_the_host_passes_the_rows_on_whole() {
    let rt = flowgate_tests::runtime();
    let p = rt.load_file(REJECT_BAD.as_ref()).unwrap();
    assert_eq!(p.info().kind, World::Filter);
    let mut input: Vec<Event> = ["a", "bad 1", "b", "bad 2", "c"]
        .iter()
        .enumerate()
        .map(|(i, v)| flowgate_tests::text(v, i as i64))
        .collect();
    input[2].key = Some(Vec::new());
    input[2].headers.push(event::Header {
        name: "h".into(),
        value: b"v".to_vec(),
    });
    let mut inst = p.instantiate(Default::default(), Vec::new()).unwrap();
    let out = inst.process_batch(&event::batch_of(&input)).unwrap();
    assert_eq!(out.origins, [0, 2, 4]);
    let failed: Vec<u32> = out.failures.iter().map(|f| f.row).collect();
    assert_eq!(failed, [1, 3]);
    assert!(
        out.failures[0].error.to_string().contains("bad event"),
        "{}",
        out.failures[0].error
    );
    let kept = [input[0].clone(), input[2].clone(), input[4].clone()];
    assert_eq!(out.output, event::batch_of(&kept), "kept rows, whole");
    // Per event: the event itself, nothing, or the error.
    assert_eq!(inst.on_event(&input[2]).unwrap(), [input[2].clone()]);
    assert!(inst.on_event(&input[1]).is_err());
}

#[test]
fn files_that_are_not_stage_components_get_errors_that_say_what_to_do() {
    let rt = flowgate_tests::runtime();
    let err = rt.load_bytes("junk", b"definitely not wasm").unwrap_err();
    assert!(matches!(err, LoadError::Compile { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("not a valid WebAssembly component")
    );

    // A core module (the empty one) is told to become a component.
    let err = rt.load_bytes("core", b"\0asm\x01\0\0\0").unwrap_err();
    assert!(matches!(err, LoadError::NotAComponent { .. }), "{err}");
    assert!(err.to_string().contains("rustup target add wasm32-wasip2"));

    // An empty component exports nothing.
    let err = rt.load_bytes("empty", b"\0asm\x0d\0\x01\0").unwrap_err();
    assert!(matches!(err, LoadError::NotAStage { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("missing export(s) init, on-event, on-batch"),
        "{err}"
    );

    let err = rt.load_file("no/such/plugin.wasm".as_ref()).unwrap_err();
    assert!(err.to_string().contains("no/such/plugin.wasm"), "{err}");
}

#[test]
fn every_instance_starts_from_fresh_memory() {
    use flowgate_tests::plugins::COUNT_BY_KEY;
    let rt = flowgate_tests::runtime();
    let plugin = rt.load_file(COUNT_BY_KEY.as_ref()).unwrap();
    // It declares `values = false`: its batches arrive without values (and it still counts).
    assert!(!plugin.info().reads_values);
    let upper = rt
        .load_file(flowgate_tests::plugins::UPPERCASE.as_ref())
        .unwrap();
    assert!(upper.info().reads_values);
    let event = flowgate_tests::text("x", 1);
    for round in 0..3 {
        let mut inst = plugin.instantiate(Default::default(), Vec::new()).unwrap();
        let first = inst.on_event(&event).unwrap();
        let second = inst.on_event(&event).unwrap();
        let third = inst
            .on_batch(&event::batch_of(std::slice::from_ref(&event)))
            .unwrap();
        assert_eq!(third.output.values.data, b"3", "round {round}");
        assert_eq!(
            (first[0].value.as_slice(), second[0].value.as_slice()),
            (&b"1"[..], &b"2"[..]),
            "instance {round} saw state of an earlier one"
        );
    }
}
