//! The safetensors reader on its own: the input is a header and a data section, framed here with
//! the 8-byte length prefix so that every input reaches the safetensors parser (the `checkpoint`
//! target gets there only through sniffing). Every outcome is a clean error or a store whose
//! tensors lie inside the data, with the shapes and element types the header states
//! (docs/testing.md, "Fuzzing").
#![no_main]

use candle_core::Device;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First two bytes: the header's length within the rest (the rest of the input is the data).
    let Some((len, rest)) = data.split_first_chunk::<2>() else { return };
    let header_len = (u16::from_le_bytes(*len) as usize).min(rest.len());
    let mut file = Vec::with_capacity(8 + rest.len());
    file.extend_from_slice(&(header_len as u64).to_le_bytes());
    file.extend_from_slice(rest);
    let data_len = rest.len() - header_len;
    let Ok(store) = coinfer::weights::load_bytes(file, "fuzz.safetensors", &Device::Cpu) else { return };
    assert_eq!(store.format(), coinfer::weights::Format::Safetensors);
    // Sizes as stored in the file: the loader may widen a type candle lacks (U16 to U32), so the
    // loaded tensor's own element size is not what the data holds.
    let header: serde_json::Value = serde_json::from_slice(&rest[..header_len]).expect("a header that loaded is JSON");
    let mut total = 0usize;
    for name in store.names() {
        let t = store.get(name).expect("every listed name has a tensor");
        let dtype = header[name]["dtype"].as_str().expect("every loaded tensor has a dtype in the header");
        total += t.elem_count() * stored_size(dtype);
    }
    assert!(total <= data_len, "the tensors ({total} bytes) lie inside the data ({data_len} bytes)");
    let _ = store.check_finite();
});

/// Bytes per element of a safetensors dtype.
fn stored_size(dtype: &str) -> usize {
    match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        _ => 1,
    }
}
