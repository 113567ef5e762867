//! Any bytes as a checkpoint: the container sniffing, the pickle machine, the zip and legacy torch
//! readers, safetensors and numpy pickles must return an error, never panic, abort or hang; whatever
//! loads must read back finite-checked (docs/testing.md, "Fuzzing").
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(store) = coinfer::weights::load_bytes(data.to_vec(), "fuzz", &candle_core::Device::Cpu) {
        let _ = store.check_finite();
    }
});
