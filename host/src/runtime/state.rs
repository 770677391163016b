//! Host side of `flowgate:plugin/state`: the stage instance's keyed state
//! ([`crate::state::KeyedState`]), when the stage is granted it.

use super::HostCtx;
use crate::wit::flowgate::plugin::state::Host;

/// Entries a single `scan` returns at most, whatever the plugin asks.
const MAX_SCAN: u32 = 10_000;

impl HostCtx {
    fn keyed(&self) -> wasmtime::Result<&crate::state::SharedState> {
        self.state.as_ref().ok_or_else(|| {
            wasmtime::format_err!(
                "plugin `{}` uses keyed state, which its stage is not granted: add `state = true` to the stage in the pipeline file",
                self.plugin
            )
        })
    }
}

impl Host for HostCtx {
    fn get(&mut self, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.keyed()?.lock().get(&key).map(<[u8]>::to_vec))
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> wasmtime::Result<()> {
        self.keyed()?
            .lock()
            .put(key, value)
            .map_err(|e| wasmtime::format_err!("plugin `{}`: {e}", self.plugin))
    }

    fn delete(&mut self, key: Vec<u8>) -> wasmtime::Result<()> {
        self.keyed()?.lock().delete(&key);
        Ok(())
    }

    fn scan(
        &mut self,
        start: Vec<u8>,
        end: Option<Vec<u8>>,
        limit: u32,
    ) -> wasmtime::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let limit = limit.min(MAX_SCAN) as usize;
        Ok(self.keyed()?.lock().scan(&start, end.as_deref(), limit))
    }
}
