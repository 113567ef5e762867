//! Inputs the `safetensors` fuzz target stopped on, replayed through the same entry point
//! (docs/testing.md, "Fuzzing").

use candle_core::{DType, Device};

/// The fuzz target's framing: two bytes give the header's length within the rest; the file is the
/// 8-byte length prefix, the header, then the data.
fn framed(input: &[u8]) -> (Vec<u8>, usize) {
    let header_len = (u16::from_le_bytes([input[0], input[1]]) as usize).min(input.len() - 2);
    let mut file = (header_len as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&input[2..]);
    (file, header_len)
}

/// A U16 tensor (a type candle lacks) loads widened to U32 with its values, beside BF16, I32, U8 and
/// an empty F32 tensor: the target had counted the widened size against the file's data section and
/// reported 28 bytes of tensors in 22 bytes of data; the loader was right.
#[test]
fn a_u16_tensor_loads_widened_with_its_values() {
    let input = std::fs::read("tests/fixtures/fuzz/safetensors/u16-widened.bin").unwrap();
    let (file, header_len) = framed(&input);
    let data = &input[2 + header_len..];
    let store = coinfer::weights::load_bytes(file, "fuzz.safetensors", &Device::Cpu).expect("the file is valid safetensors");
    assert_eq!(store.format(), coinfer::weights::Format::Safetensors);
    let x = store.get("x").unwrap();
    assert_eq!((x.dtype(), x.dims()), (DType::U32, &[3][..]));
    let expected: Vec<u32> = data[..6].chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]) as u32).collect();
    assert_eq!(x.to_vec1::<u32>().unwrap(), expected);
    let k = store.get("k").unwrap();
    assert_eq!(k.to_vec1::<u8>().unwrap(), data[18..22]);
    assert_eq!(store.get("e").unwrap().elem_count(), 0);
}
