//! Keeps records whose value contains `"level":"error"` (as the Flowgate `contains` plugin).
use fluvio_smartmodule::{smartmodule, Result, SmartModuleRecord};

#[smartmodule(filter)]
pub fn filter(record: &SmartModuleRecord) -> Result<bool> {
    Ok(memchr::memmem::find(record.value.as_ref(), br#""level":"error""#).is_some())
}
