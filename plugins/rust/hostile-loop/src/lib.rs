//! Hostile fixture: never returns from on-event. The host must stop it at its deadline.
use flowgate_sdk::EventRef;

#[flowgate_sdk::map]
fn spin(event: &EventRef) -> Vec<u8> {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(event.value.len() as u64 + 1));
        if n == 0 {
            break;
        }
    }
    n.to_string().into_bytes()
}
