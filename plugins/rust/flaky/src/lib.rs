//! Test fixture: fails each event with a `retryable` error `fail-times` times (config, default
//! 2), then passes it through. Counts per value, in the instance's memory, so a retry of the
//! same event on the same instance eventually succeeds.
use flowgate_sdk::{Error, EventRef};
use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    static SEEN: RefCell<HashMap<Vec<u8>, u32>> = RefCell::new(HashMap::new());
}

#[flowgate_sdk::map]
fn flaky(event: &EventRef) -> Result<Vec<u8>, Error> {
    let times: u32 = flowgate_sdk::config().parse_or("fail-times", 2)?;
    let n = SEEN.with(|s| {
        let mut s = s.borrow_mut();
        let n = s.entry(event.value.to_vec()).or_insert(0);
        *n += 1;
        *n
    });
    if n <= times {
        return Err(Error::retryable(format!(
            "attempt {n} of {:?} failed on purpose",
            String::from_utf8_lossy(event.value)
        )));
    }
    Ok(event.value.to_vec())
}
