//! Loading: the compiled-code cache, and clear errors for files that are not stage plugins.

use flowgate::runtime::{LoadError, Runtime, RuntimeConfig};
use flowgate_tests::plugins::{ALL, SPLIT};
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
fn every_plugin_loads_as_a_stage_or_aggregator_with_no_filesystem_or_network_grant() {
    let rt = flowgate_tests::runtime();
    for (name, path) in ALL {
        let p = rt
            .load_file(path.as_ref())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let exports: &[&str] = if name.starts_with("window-") || *name == "count-sum" {
            assert_eq!(p.info().world, "flowgate:plugin/aggregator@0.1.0");
            &[
                "init (func)",
                "create (func)",
                "add (func)",
                "merge (func)",
                "finish (func)",
            ]
        } else {
            assert_eq!(p.info().world, "flowgate:plugin/stage@0.1.0");
            &["init (func)", "on-event (func)", "on-batch (func)"]
        };
        // Keyed state is imported only by the plugins that use it.
        let stateful = [
            "state-count",
            "dedup",
            "linear-regression",
            "count-then-fail",
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
            .on_batch(&flowgate::event::batch_of(std::slice::from_ref(&event)))
            .unwrap();
        assert_eq!(third.output.values.data, b"3", "round {round}");
        assert_eq!(
            (first[0].value.as_slice(), second[0].value.as_slice()),
            (&b"1"[..], &b"2"[..]),
            "instance {round} saw state of an earlier one"
        );
    }
}
