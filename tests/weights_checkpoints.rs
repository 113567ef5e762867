//! Checkpoint reading against hand-made fixtures (tools/weights/make_fixtures.py): every tensor of each
//! container is compared bit for bit with the element values the script says it wrote.

use candle_core::{DType, Device, Tensor};
use coinfer::error::{ErrorKind, kind_of};
use coinfer::weights::{self, Format};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/weights").join(name)
}

fn expected() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap()
}

/// Element bits of a tensor as hex numbers, the form expected.json uses.
fn bits(t: &Tensor) -> Vec<String> {
    let t = t.flatten_all().unwrap();
    match t.dtype() {
        DType::F32 => t.to_vec1::<f32>().unwrap().iter().map(|v| format!("{:08x}", v.to_bits())).collect(),
        DType::F64 => t.to_vec1::<f64>().unwrap().iter().map(|v| format!("{:016x}", v.to_bits())).collect(),
        DType::F16 => t.to_vec1::<half::f16>().unwrap().iter().map(|v| format!("{:04x}", v.to_bits())).collect(),
        DType::BF16 => t.to_vec1::<half::bf16>().unwrap().iter().map(|v| format!("{:04x}", v.to_bits())).collect(),
        DType::I64 => t.to_vec1::<i64>().unwrap().iter().map(|v| format!("{:016x}", *v as u64)).collect(),
        DType::U8 => t.to_vec1::<u8>().unwrap().iter().map(|v| format!("{v:02x}")).collect(),
        d => panic!("unexpected dtype {d:?}"),
    }
}

/// What the store should hold for a torch dtype: i32 is widened to i64, bool kept as u8.
fn native(dtype: &str, hexes: &[String]) -> (DType, Vec<String>) {
    match dtype {
        "f32" => (DType::F32, hexes.to_vec()),
        "f64" => (DType::F64, hexes.to_vec()),
        "f16" => (DType::F16, hexes.to_vec()),
        "bf16" => (DType::BF16, hexes.to_vec()),
        "i64" => (DType::I64, hexes.to_vec()),
        "u8" | "bool" => (DType::U8, hexes.to_vec()),
        "i32" => (
            DType::I64,
            hexes
                .iter()
                .map(|h| {
                    format!(
                        "{:016x}",
                        i32::from_str_radix(h, 16).unwrap_or_else(|_| u32::from_str_radix(h, 16).unwrap() as i32) as i64 as u64
                    )
                })
                .collect(),
        ),
        d => panic!("unknown dtype {d}"),
    }
}

fn check_file(name: &str, format: Format) {
    let exp = expected();
    let want = exp[name].as_object().unwrap_or_else(|| panic!("no expectations for {name}"));
    check_against(&fixture(name), want, format);
}

fn check_against(path: &Path, want: &serde_json::Map<String, serde_json::Value>, format: Format) {
    let name = path.display();
    let store = weights::load(path, &Device::Cpu).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    assert_eq!(store.format(), format);
    let mut names: Vec<&str> = store.names().iter().map(String::as_str).collect();
    names.sort();
    let mut want_names: Vec<&str> = want.keys().map(String::as_str).collect();
    want_names.sort();
    assert_eq!(names, want_names, "{name}: tensor names");
    for (tname, w) in want {
        let t = store.get(tname).unwrap();
        let shape: Vec<usize> = w["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        assert_eq!(t.dims(), shape.as_slice(), "{name}: {tname} shape");
        let hexes: Vec<String> = w["bits"].as_array().unwrap().iter().map(|h| h.as_str().unwrap().to_string()).collect();
        let (dt, hexes) = native(w["dtype"].as_str().unwrap(), &hexes);
        assert_eq!(t.dtype(), dt, "{name}: {tname} dtype");
        assert_eq!(bits(t), hexes, "{name}: {tname} values");
    }
}

/// Files written by real torch.save (tools/weights/make_torch_fixtures.py), both containers.
#[test]
fn real_torch_files_are_bit_exact() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/weights/torch");
    let exp: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let want = exp["tensors"].as_object().unwrap();
    assert_eq!(want.len(), 18);
    check_against(&dir.join("zip.pyth"), want, Format::TorchZip);
    check_against(&dir.join("legacy.pyth"), want, Format::TorchLegacy);
}

#[test]
fn zip_container_is_bit_exact() {
    check_file("wrapped_zip.pyth", Format::TorchZip);
}

#[test]
fn legacy_container_is_bit_exact() {
    check_file("wrapped_legacy.pyth", Format::TorchLegacy);
}

#[test]
fn legacy_storage_views_are_bit_exact() {
    check_file("legacy_views.pth", Format::TorchLegacy);
}

#[test]
fn plain_state_dict_with_module_prefix() {
    check_file("plain_module_zip.pth", Format::TorchZip);
}

#[test]
fn safetensors_is_bit_exact() {
    check_file("small.safetensors", Format::Safetensors);
}

#[test]
fn both_containers_give_identical_tensors() {
    let d = Device::Cpu;
    let z = weights::load(&fixture("wrapped_zip.pyth"), &d).unwrap();
    let l = weights::load(&fixture("wrapped_legacy.pyth"), &d).unwrap();
    assert_eq!(z.names(), l.names());
    for n in z.names() {
        assert_eq!(bits(z.get(n).unwrap()), bits(l.get(n).unwrap()), "{n}");
    }
}

#[test]
fn take_converts_to_f32_and_checks_shapes() {
    let mut s = weights::load(&fixture("wrapped_zip.pyth"), &Device::Cpu).unwrap();
    let h = s.take("s2.half", &[5]).unwrap();
    assert_eq!(h.dtype(), DType::F32);
    assert_eq!(h.to_vec1::<f32>().unwrap(), vec![0.5, -2.0, 65504.0, 1.0 / 16384.0, 1.0 / 1024.0]);
    let b = s.take("s2.bf16", &[2, 3]).unwrap();
    assert_eq!(b.flatten_all().unwrap().to_vec1::<f32>().unwrap()[..4], [1.0, -3.5, 0.15625, 256.0]);

    let e = s.take("s1.conv.weight", &[4, 3, 1, 3, 1]).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("s1.conv.weight") && msg.contains("[4, 3, 1, 3, 3]") && msg.contains("[4, 3, 1, 3, 1]"), "{msg}");
    assert_eq!(kind_of(&e), ErrorKind::Data);

    let e = s.take("s1.conv_xy.weight", &[24, 3, 1, 3, 3]).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("missing tensor s1.conv_xy.weight") && msg.contains("[24, 3, 1, 3, 3]"), "{msg}");
    // The hint names some tensors the file has but nobody took.
    assert!(msg.contains("s1.conv.weight [4, 3, 1, 3, 3]"), "{msg}");

    assert!(s.take_optional("s1.branch1_bn.weight", &[2]).unwrap().is_none());
    assert!(s.take_optional("s1.bn.weight", &[2]).unwrap().is_some());
}

#[test]
fn finish_reports_unused_tensors() {
    let mut s = weights::load(&fixture("wrapped_legacy.pyth"), &Device::Cpu).unwrap();
    let n = s.len();
    assert_eq!(n, 16);
    s.ignore(|n| n.ends_with("num_batches_tracked"));
    for name in s.names().to_vec() {
        if name != "s2.slice" && name != "s2.empty" {
            let shape = s.get(&name).unwrap().dims().to_vec();
            s.take(&name, &shape).unwrap();
        }
    }
    let msg = format!("{:#}", s.finish().unwrap_err());
    assert!(msg.contains("2 unexpected tensors") && msg.contains("s2.slice [2, 2, 2]") && msg.contains("s2.empty [0, 3]"), "{msg}");

    // Taking everything succeeds.
    let mut s = weights::load(&fixture("small.safetensors"), &Device::Cpu).unwrap();
    s.take("s1.conv.weight", &[2, 3]).unwrap();
    s.take("head.b", &[3]).unwrap();
    s.finish().unwrap();
}

#[test]
fn verify_lists_every_problem() {
    let s = weights::load(&fixture("plain_module_zip.pth"), &Device::Cpu).unwrap();
    let ok: [(&str, &[usize]); 2] = [("fc.weight", &[2, 3]), ("fc.bias", &[2])];
    s.verify(&ok).unwrap();
    let bad: [(&str, &[usize]); 3] = [("fc.weight", &[3, 2]), ("fc2.weight", &[7, 2]), ("fc2.bias", &[7])];
    let msg = format!("{:#}", s.verify(&bad).unwrap_err());
    assert!(msg.contains("2 missing tensors: fc2.weight [7, 2], fc2.bias [7]"), "{msg}");
    assert!(msg.contains("fc.weight: expected [3, 2], found [2, 3]"), "{msg}");
    assert!(msg.contains("1 unexpected tensors: fc.bias [2]"), "{msg}");
}

#[test]
fn rename_maps_layouts() {
    let mut s = weights::load(&fixture("plain_module_zip.pth"), &Device::Cpu).unwrap();
    s.rename(|n| n.strip_prefix("fc.").map(|r| format!("head.projection.{r}"))).unwrap();
    assert_eq!(s.names(), ["head.projection.weight", "head.projection.bias"]);
    assert!(s.rename(|_| Some("same".into())).is_err());
}

fn load_err(name: &str) -> String {
    match weights::load(&fixture(name), &Device::Cpu) {
        Ok(_) => panic!("{name} loaded"),
        Err(e) => {
            assert_eq!(kind_of(&e), ErrorKind::Data, "{name}: {e:#}");
            format!("{e:#}")
        }
    }
}

#[test]
fn hostile_files_fail_cleanly() {
    let m = load_err("evil_global_zip.pth");
    assert!(m.contains("`os.system`") && m.contains("not allowed"), "{m}");
    let m = load_err("evil_global_legacy.pth");
    assert!(m.contains("`__builtin__.eval`"), "{m}");
    let m = load_err("truncated_legacy.pyth");
    assert!(m.contains("truncated"), "{m}");
    let m = load_err("truncated_legacy_pickle.pyth");
    assert!(m.contains("truncated"), "{m}");
    load_err("truncated_zip.pyth");
    let m = load_err("wrong_magic.pth");
    assert!(m.contains("wrong magic number"), "{m}");
    let e = weights::load_bytes(b"GIF89a not a checkpoint".to_vec(), "x", &Device::Cpu).err().unwrap();
    assert!(format!("{e:#}").contains("unrecognised format"), "{e:#}");
    let m = load_err("huge_count_legacy.pth");
    assert!(m.contains("truncated in storage 0"), "{m}");
    let m = load_err("out_of_range_zip.pth");
    assert!(m.contains("tensor w") && m.contains("reaches element 8"), "{m}");
    let m = load_err("missing_storage_zip.pth");
    assert!(m.contains("storage 0"), "{m}");
    let m = load_err("zip_bomb.pth");
    assert!(m.contains("claims 20971520 bytes"), "{m}");
    let m = load_err("no_tensors_zip.pth");
    assert!(m.contains("no tensors found"), "{m}");
}

#[test]
fn missing_file_is_no_input() {
    let e = weights::load(Path::new("/nonexistent/x3d_s.pyth"), &Device::Cpu).err().unwrap();
    assert_eq!(kind_of(&e), ErrorKind::NoInput);
}

#[test]
fn every_prefix_of_a_checkpoint_fails_cleanly() {
    // Truncation anywhere must give an error, never a panic or a partial load.
    for name in ["wrapped_legacy.pyth", "wrapped_zip.pyth"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        for cut in (0..bytes.len()).step_by(7) {
            assert!(weights::load_bytes(bytes[..cut].to_vec(), name, &Device::Cpu).is_err(), "{name} cut at {cut}");
        }
    }
}

#[test]
fn random_corruption_never_panics() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for name in ["wrapped_legacy.pyth", "wrapped_zip.pyth", "small.safetensors"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        for _ in 0..300 {
            let mut b = bytes.clone();
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..b.len());
                b[i] = rng.random();
            }
            // Either outcome is fine; it must return.
            let _ = weights::load_bytes(b, name, &Device::Cpu);
        }
    }
}

/// Pickles of nested dicts of numpy arrays written by numpy itself (tools/weights/make_numpy_fixtures.py):
/// C and Fortran order, big-endian, every supported dtype, protocols 2 and 4.
#[test]
fn numpy_pickles_are_bit_exact() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/weights/numpy");
    let exp: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let want = exp["tensors"].as_object().unwrap();
    assert_eq!(want.len(), 10);
    assert!(want.contains_key("params/Mixed_3b/Branch_1/Conv3d_0b_3x3/BatchNorm_0/bias"));
    check_against(&dir.join("arrays_p4.pkl"), want, Format::NumpyPickle);
    check_against(&dir.join("arrays_p2.pkl"), want, Format::NumpyPickle);
    let e = weights::load(&dir.join("complex.pkl"), &Device::Cpu).err().unwrap();
    assert!(format!("{e:#}").contains("unsupported numpy dtype c8"), "{e:#}");
}

/// Conv + BN folding through the store, against the formula evaluated here in f64 on the file's values.
#[test]
fn take_conv_bn_folds_real_torch_batchnorm() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/weights/torch");
    let exp: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let vals = |name: &str| -> Vec<f64> {
        exp["tensors"][name]["bits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| f32::from_bits(u32::from_str_radix(h.as_str().unwrap(), 16).unwrap()) as f64)
            .collect()
    };
    let (w, g, b, m, v) = (vals("conv.weight"), vals("bn.weight"), vals("bn.bias"), vals("bn.running_mean"), vals("bn.running_var"));
    let mut s = weights::load(&dir.join("legacy.pyth"), &Device::Cpu).unwrap();
    let (fw, fb) = s.take_conv_bn("conv", "bn", &[4, 3, 1, 3, 3], 1e-5).unwrap();
    let fw = fw.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let fb = fb.to_vec1::<f32>().unwrap();
    for c in 0..4 {
        let scale = g[c] / (v[c] + 1e-5).sqrt();
        assert!((fb[c] as f64 - (b[c] - m[c] * scale)).abs() < 1e-5, "bias {c}");
        for k in 0..27 {
            assert!((fw[c * 27 + k] as f64 - w[c * 27 + k] * scale).abs() < 1e-5, "weight {c} {k}");
        }
    }
    // num_batches_tracked was consumed with the BN; the linear layer and the extras remain.
    let left = format!("{:#}", s.finish().unwrap_err());
    assert!(left.contains("12 unexpected tensors") && !left.contains("bn."), "{left}");
}

/// A NaN or an infinity in any floating-point tensor is refused as bad data, naming the tensor and
/// the place; finite files and integer tensors pass.
#[test]
fn non_finite_weights_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = Tensor::new(&[0.5f32, -1.0, 2.0], &Device::Cpu).unwrap();
    let steps = Tensor::new(&[7i64], &Device::Cpu).unwrap();
    for (bad, shown) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf"), (f32::NEG_INFINITY, "-inf")] {
        let values = Tensor::new(&[1.0f32, 2.0, bad, 3.0], &Device::Cpu).unwrap().to_dtype(DType::F16).unwrap();
        let path = dir.path().join("bad.safetensors");
        let tensors = [("a.weight", good.clone()), ("b.bias", values), ("n.num_batches_tracked", steps.clone())];
        candle_core::safetensors::save(&tensors.into_iter().map(|(n, t)| (n.to_string(), t)).collect(), &path).unwrap();
        let err = weights::load(&path, &Device::Cpu).unwrap().check_finite().unwrap_err();
        let msg = format!("{err:#}");
        assert_eq!(kind_of(&err), ErrorKind::Data, "{msg}");
        assert!(msg.contains(&format!("tensor b.bias holds {shown} at flat index 2")), "{msg}");
    }
    let path = dir.path().join("good.safetensors");
    let tensors = [("a.weight".to_string(), good), ("n.num_batches_tracked".to_string(), steps)];
    candle_core::safetensors::save(&tensors.into_iter().collect(), &path).unwrap();
    weights::load(&path, &Device::Cpu).unwrap().check_finite().unwrap();
}
