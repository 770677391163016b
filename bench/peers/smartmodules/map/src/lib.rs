//! The value in ASCII upper case (as the Flowgate `uppercase` plugin).
use fluvio_smartmodule::{smartmodule, RecordData, Result, SmartModuleRecord};

#[smartmodule(map)]
pub fn map(record: &SmartModuleRecord) -> Result<(Option<RecordData>, RecordData)> {
    Ok((record.key.clone(), record.value.as_ref().to_ascii_uppercase().into()))
}
