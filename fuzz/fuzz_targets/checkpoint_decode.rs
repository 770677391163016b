//! Feeds arbitrary bytes to the decoding of a step checkpoint (the JSON record, then the keyed
//! state snapshot) as a restart reads it: it must return the checkpoint or an error, never
//! panic. A record that decodes serialises and decodes back to itself.
#![no_main]

use flowgate::flow::Checkpoint;
use flowgate::state::KeyedState;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((record, state)) = Checkpoint::decode(data) else {
        return;
    };
    let mut again = serde_json::to_vec(&record).expect("a checkpoint serialises");
    again.push(b'\n');
    let (back, rest) = Checkpoint::decode(&again).expect("a serialised checkpoint decodes");
    assert_eq!(back, record);
    assert!(rest.is_empty());
    if !state.is_empty() {
        let _ = KeyedState::decode(state, usize::MAX);
    }
});
