//! A running count per key, as the value (as the Flowgate `count-by-key` plugin): state in the
//! module's memory, which Fluvio keeps between calls.
use std::cell::RefCell;
use std::collections::HashMap;

use fluvio_smartmodule::{smartmodule, RecordData, Result, SmartModuleRecord};

thread_local! {
    static COUNTS: RefCell<HashMap<Vec<u8>, u64>> = RefCell::new(HashMap::new());
}

#[smartmodule(map)]
pub fn map(record: &SmartModuleRecord) -> Result<(Option<RecordData>, RecordData)> {
    let key = record.key.as_ref().map(|k| k.as_ref().to_vec()).unwrap_or_default();
    let n = COUNTS.with_borrow_mut(|c| {
        let n = c.entry(key).or_insert(0);
        *n += 1;
        *n
    });
    Ok((record.key.clone(), n.to_string().into()))
}
