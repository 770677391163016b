//! Builds every plugin under `plugins/` for wasm32-wasip2 and exposes each as a constant holding
//! the path of its component (`UPPERCASE`, `HOSTILE_LOOP`, ...), plus `ALL`.
//!
//! A missing wasm32-wasip2 target fails the build with the command that installs it, and so does
//! a plugin that no test under `tests/all/` names.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let here = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = here.parent().expect("tests/ sits in the workspace root");
    let plugins = root.join("plugins");
    for watched in [
        "plugins/Cargo.toml",
        "plugins/Cargo.lock",
        "plugins/.cargo/config.toml",
        "plugins/rust",
        "guest-sdk",
        "wit",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-changed=all");

    check_target();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--target", TARGET])
        .current_dir(&plugins);
    // Settings meant for the outer build (clippy's wrapper, host flags) must not leak into it.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CLIPPY_ARGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build the plugins: {e}"));
    assert!(
        status.success(),
        "building the plugins failed (run `cd plugins && cargo build --release` to see why)"
    );

    let out_dir = plugins.join("target").join(TARGET).join("release");
    let tests_src = read_tests(&here.join("all")) + &read_tests(&here.join("languages"));
    let mut consts = String::new();
    let mut all = String::from(
        "/// Every plugin: (crate name, component path).\npub const ALL: &[(&str, &str)] = &[\n",
    );
    let mut names: Vec<String> = std::fs::read_dir(plugins.join("rust"))
        .expect("plugins/rust exists")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in &names {
        let wasm = out_dir.join(format!("{}.wasm", name.replace('-', "_")));
        assert!(
            wasm.exists(),
            "plugin {name} built but {} is missing",
            wasm.display()
        );
        let constant = name.replace('-', "_").to_uppercase();
        assert!(
            tests_src.contains(&constant),
            "plugin `{name}` has no test: name `{constant}` in a test under tests/all/ or tests/languages/"
        );
        consts.push_str(&format!(
            "/// Component of `plugins/rust/{name}`.\npub const {constant}: &str = {:?};\n",
            wasm.display().to_string()
        ));
        all.push_str(&format!("    ({name:?}, {constant}),\n"));
    }
    all.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("plugins.rs");
    std::fs::write(dest, consts + &all).expect("write plugins.rs");
}

fn check_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let lib = Path::new(&sysroot).join("lib/rustlib").join(TARGET);
    assert!(
        lib.exists(),
        "the {TARGET} target is not installed, so the test plugins cannot be built; \
         install it with: rustup target add {TARGET}"
    );
}

fn read_tests(dir: &Path) -> String {
    let mut src = String::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "rs") {
                src.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
    }
    src
}
