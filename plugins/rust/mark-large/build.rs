//! Writes the 4 MiB table the plugin carries (xorshift bytes: nothing to fold or compress).
fn main() {
    let mut x: u32 = 2_463_534_242;
    let table: Vec<u8> = (0..4 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(out.join("table.bin"), table).expect("write table");
}
