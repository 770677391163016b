//! Building plugins in any language: `flowgate plugin new` writes a project, `flowgate plugin
//! build` builds it, and a core WebAssembly module (what C, Go, Zig and others produce) becomes
//! a component here ([`componentize`]), so no separate `wasm-tools` is needed.

pub mod project;

use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::Resolve;

/// The contract, as this build of Flowgate speaks it.
pub const WIT: &str = include_str!("../../../wit/plugin.wit");

/// Why a module could not become a component.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ComponentizeError(String);

/// True when `bytes` is a component (not a core module).
pub fn is_component(bytes: &[u8]) -> bool {
    wasmparser::Parser::is_component(bytes)
}

/// True when the module carries component-type metadata (as wit-bindgen output does).
fn has_metadata(bytes: &[u8]) -> bool {
    wasmparser::Parser::new(0).parse_all(bytes).any(|p| {
        matches!(p, Ok(wasmparser::Payload::CustomSection(c)) if c.name().starts_with("component-type"))
    })
}

/// Turns a core module into a component of `world` (`stage` or `aggregator`): embeds the
/// world's type information unless the module has it already, and adapts WASI preview1 imports
/// (`wasi_snapshot_preview1`) to WASI 0.2 with the reactor adapter. A component is returned as
/// it is.
pub fn componentize(bytes: &[u8], world: &str) -> Result<Vec<u8>, ComponentizeError> {
    if is_component(bytes) {
        return Ok(bytes.to_vec());
    }
    if !wasmparser::Parser::is_core_wasm(bytes) {
        return Err(ComponentizeError(
            "neither a WebAssembly core module nor a component (no `\\0asm` header of a known \
             version): check the build's output file"
                .into(),
        ));
    }
    let renamed = dashed_exports(bytes)?;
    let bytes = renamed.as_deref().unwrap_or(bytes);
    let mut module = bytes.to_vec();
    if !has_metadata(bytes) {
        let mut resolve = Resolve::default();
        let pkg = resolve
            .push_str("plugin.wit", WIT)
            .map_err(|e| ComponentizeError(format!("the bundled WIT does not parse: {e:#}")))?;
        let world = resolve
            .select_world(&[pkg], Some(world))
            .map_err(|e| ComponentizeError(format!("{e:#}")))?;
        wit_component::embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)
            .map_err(|e| ComponentizeError(format!("embedding the world: {e:#}")))?;
    }
    let mut encoder = ComponentEncoder::default();
    encoder.validate(true);
    encoder
        .module(&module)
        .map_err(|e| ComponentizeError(format!("{e:#}")))?;
    let imports_wasi = wasmparser::Parser::new(0)
        .parse_all(bytes)
        .any(|p| match p {
            Ok(wasmparser::Payload::ImportSection(r)) => r.into_iter().any(|group| {
                let module = match group {
                    Ok(wasmparser::Imports::Single(_, i)) => i.module,
                    Ok(wasmparser::Imports::Compact1 { module, .. })
                    | Ok(wasmparser::Imports::Compact2 { module, .. }) => module,
                    Err(_) => return false,
                };
                module == "wasi_snapshot_preview1"
            }),
            _ => false,
        });
    if imports_wasi {
        encoder
            .adapter(
                wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
                wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
            )
            .map_err(|e| ComponentizeError(format!("{e:#}")))?;
    }
    encoder.encode().map_err(|e| {
        ComponentizeError(format!(
            "the module does not implement the `{}` world: {e:#}",
            world_name(world)
        ))
    })
}

/// The world exports whose names have a dash, which some languages cannot spell (AssemblyScript
/// exports `on_event` for `on-event`, `keep_batch` for `keep-batch`).
const DASHED: [&str; 3] = ["on-event", "on-batch", "keep-batch"];

/// The module with its snake-case entry points (`on_event`, `keep_batch`, ...) renamed to the
/// dashed names of [`DASHED`], or `None` when there is nothing to rename.
fn dashed_exports(bytes: &[u8]) -> Result<Option<Vec<u8>>, ComponentizeError> {
    let bad =
        |e: wasmparser::BinaryReaderError| ComponentizeError(format!("malformed module: {e}"));
    let mut exports = Vec::new();
    let mut export_range = None;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        if let wasmparser::Payload::ExportSection(reader) = payload.map_err(bad)? {
            export_range = Some(reader.range());
            for e in reader {
                let e = e.map_err(bad)?;
                exports.push((e.name.to_owned(), e.kind, e.index));
            }
        }
    }
    let Some(range) = export_range else {
        return Ok(None);
    };
    let has = |n: &str| exports.iter().any(|(name, ..)| name == n);
    let renames: Vec<(&str, String)> = DASHED
        .iter()
        .map(|d| (*d, d.replace('-', "_")))
        .filter(|(d, snake)| !has(d) && has(snake))
        .collect();
    if renames.is_empty() {
        return Ok(None);
    }
    let mut section = wasm_encoder::ExportSection::new();
    for (name, kind, index) in &exports {
        let name = renames
            .iter()
            .find(|(_, snake)| snake == name)
            .map_or(name.as_str(), |(d, _)| d);
        let kind = match kind {
            wasmparser::ExternalKind::Func | wasmparser::ExternalKind::FuncExact => {
                wasm_encoder::ExportKind::Func
            }
            wasmparser::ExternalKind::Table => wasm_encoder::ExportKind::Table,
            wasmparser::ExternalKind::Memory => wasm_encoder::ExportKind::Memory,
            wasmparser::ExternalKind::Global => wasm_encoder::ExportKind::Global,
            wasmparser::ExternalKind::Tag => wasm_encoder::ExportKind::Tag,
        };
        section.export(name, kind, *index);
    }
    // The section's id and size come just before its contents: replace all three.
    let mut start = range.start - 1;
    while bytes[start - 1] & 0x80 != 0 {
        start -= 1;
    }
    start -= 1; // the id byte
    let mut out = bytes[..start].to_vec();
    wasm_encoder::Section::append_to(&section, &mut out);
    out.extend_from_slice(&bytes[range.end..]);
    Ok(Some(out))
}

fn world_name(world: &str) -> String {
    format!("flowgate:plugin/{world}")
}

#[cfg(test)]
mod tests {
    use wasm_encoder::{
        CodeSection, ExportKind, ExportSection, Function, FunctionSection, Module, TypeSection,
    };

    use super::dashed_exports;

    fn exports(bytes: &[u8]) -> Vec<String> {
        let mut names = Vec::new();
        for payload in wasmparser::Parser::new(0).parse_all(bytes) {
            if let wasmparser::Payload::ExportSection(reader) = payload.unwrap() {
                names.extend(reader.into_iter().map(|e| e.unwrap().name.to_owned()));
            }
        }
        names
    }

    #[test]
    fn snake_case_entry_points_are_renamed_and_the_module_stays_valid() {
        let mut module = Module::new();
        let mut types = TypeSection::new();
        types.ty().function([], []);
        module.section(&types);
        let mut funcs = FunctionSection::new();
        funcs.function(0).function(0);
        module.section(&funcs);
        let mut section = ExportSection::new();
        section
            .export("on_event", ExportKind::Func, 0)
            .export("init", ExportKind::Func, 1)
            .export("on-batch", ExportKind::Func, 1);
        module.section(&section);
        let mut code = CodeSection::new();
        for _ in 0..2 {
            let mut f = Function::new([]);
            f.instructions().end();
            code.function(&f);
        }
        module.section(&code);
        let bytes = module.finish();

        let renamed = dashed_exports(&bytes).unwrap().expect("a rename");
        assert_eq!(exports(&renamed), ["on-event", "init", "on-batch"]);
        wasmparser::Validator::new().validate_all(&renamed).unwrap();
        assert_eq!(
            dashed_exports(&renamed).unwrap(),
            None,
            "nothing left to rename"
        );
    }
}
