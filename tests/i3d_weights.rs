//! The bundled I3D checkpoint against the tensor table of docs/models.md, "I3D" (230 tensors, OIDHW
//! kernels, 12,689,984 learnable scalars, no BatchNorm scale), and the model consuming all of it.

use candle_core::Device;
use coinfer::models::ModelOptions;
use coinfer::models::i3d;

/// Unit, conv kernel OIDHW, BN channels (transcribed from the table).
const UNITS: [(&str, [usize; 5], usize); 57] = [
    ("Conv3d_1a_7x7", [64, 3, 7, 7, 7], 64),
    ("Conv3d_2b_1x1", [64, 64, 1, 1, 1], 64),
    ("Conv3d_2c_3x3", [192, 64, 3, 3, 3], 192),
    ("Mixed_3b.Branch_0.Conv3d_0a_1x1", [64, 192, 1, 1, 1], 64),
    ("Mixed_3b.Branch_1.Conv3d_0a_1x1", [96, 192, 1, 1, 1], 96),
    ("Mixed_3b.Branch_1.Conv3d_0b_3x3", [128, 96, 3, 3, 3], 128),
    ("Mixed_3b.Branch_2.Conv3d_0a_1x1", [16, 192, 1, 1, 1], 16),
    ("Mixed_3b.Branch_2.Conv3d_0b_3x3", [32, 16, 3, 3, 3], 32),
    ("Mixed_3b.Branch_3.Conv3d_0b_1x1", [32, 192, 1, 1, 1], 32),
    ("Mixed_3c.Branch_0.Conv3d_0a_1x1", [128, 256, 1, 1, 1], 128),
    ("Mixed_3c.Branch_1.Conv3d_0a_1x1", [128, 256, 1, 1, 1], 128),
    ("Mixed_3c.Branch_1.Conv3d_0b_3x3", [192, 128, 3, 3, 3], 192),
    ("Mixed_3c.Branch_2.Conv3d_0a_1x1", [32, 256, 1, 1, 1], 32),
    ("Mixed_3c.Branch_2.Conv3d_0b_3x3", [96, 32, 3, 3, 3], 96),
    ("Mixed_3c.Branch_3.Conv3d_0b_1x1", [64, 256, 1, 1, 1], 64),
    ("Mixed_4b.Branch_0.Conv3d_0a_1x1", [192, 480, 1, 1, 1], 192),
    ("Mixed_4b.Branch_1.Conv3d_0a_1x1", [96, 480, 1, 1, 1], 96),
    ("Mixed_4b.Branch_1.Conv3d_0b_3x3", [208, 96, 3, 3, 3], 208),
    ("Mixed_4b.Branch_2.Conv3d_0a_1x1", [16, 480, 1, 1, 1], 16),
    ("Mixed_4b.Branch_2.Conv3d_0b_3x3", [48, 16, 3, 3, 3], 48),
    ("Mixed_4b.Branch_3.Conv3d_0b_1x1", [64, 480, 1, 1, 1], 64),
    ("Mixed_4c.Branch_0.Conv3d_0a_1x1", [160, 512, 1, 1, 1], 160),
    ("Mixed_4c.Branch_1.Conv3d_0a_1x1", [112, 512, 1, 1, 1], 112),
    ("Mixed_4c.Branch_1.Conv3d_0b_3x3", [224, 112, 3, 3, 3], 224),
    ("Mixed_4c.Branch_2.Conv3d_0a_1x1", [24, 512, 1, 1, 1], 24),
    ("Mixed_4c.Branch_2.Conv3d_0b_3x3", [64, 24, 3, 3, 3], 64),
    ("Mixed_4c.Branch_3.Conv3d_0b_1x1", [64, 512, 1, 1, 1], 64),
    ("Mixed_4d.Branch_0.Conv3d_0a_1x1", [128, 512, 1, 1, 1], 128),
    ("Mixed_4d.Branch_1.Conv3d_0a_1x1", [128, 512, 1, 1, 1], 128),
    ("Mixed_4d.Branch_1.Conv3d_0b_3x3", [256, 128, 3, 3, 3], 256),
    ("Mixed_4d.Branch_2.Conv3d_0a_1x1", [24, 512, 1, 1, 1], 24),
    ("Mixed_4d.Branch_2.Conv3d_0b_3x3", [64, 24, 3, 3, 3], 64),
    ("Mixed_4d.Branch_3.Conv3d_0b_1x1", [64, 512, 1, 1, 1], 64),
    ("Mixed_4e.Branch_0.Conv3d_0a_1x1", [112, 512, 1, 1, 1], 112),
    ("Mixed_4e.Branch_1.Conv3d_0a_1x1", [144, 512, 1, 1, 1], 144),
    ("Mixed_4e.Branch_1.Conv3d_0b_3x3", [288, 144, 3, 3, 3], 288),
    ("Mixed_4e.Branch_2.Conv3d_0a_1x1", [32, 512, 1, 1, 1], 32),
    ("Mixed_4e.Branch_2.Conv3d_0b_3x3", [64, 32, 3, 3, 3], 64),
    ("Mixed_4e.Branch_3.Conv3d_0b_1x1", [64, 512, 1, 1, 1], 64),
    ("Mixed_4f.Branch_0.Conv3d_0a_1x1", [256, 528, 1, 1, 1], 256),
    ("Mixed_4f.Branch_1.Conv3d_0a_1x1", [160, 528, 1, 1, 1], 160),
    ("Mixed_4f.Branch_1.Conv3d_0b_3x3", [320, 160, 3, 3, 3], 320),
    ("Mixed_4f.Branch_2.Conv3d_0a_1x1", [32, 528, 1, 1, 1], 32),
    ("Mixed_4f.Branch_2.Conv3d_0b_3x3", [128, 32, 3, 3, 3], 128),
    ("Mixed_4f.Branch_3.Conv3d_0b_1x1", [128, 528, 1, 1, 1], 128),
    ("Mixed_5b.Branch_0.Conv3d_0a_1x1", [256, 832, 1, 1, 1], 256),
    ("Mixed_5b.Branch_1.Conv3d_0a_1x1", [160, 832, 1, 1, 1], 160),
    ("Mixed_5b.Branch_1.Conv3d_0b_3x3", [320, 160, 3, 3, 3], 320),
    ("Mixed_5b.Branch_2.Conv3d_0a_1x1", [32, 832, 1, 1, 1], 32),
    ("Mixed_5b.Branch_2.Conv3d_0b_3x3", [128, 32, 3, 3, 3], 128),
    ("Mixed_5b.Branch_3.Conv3d_0b_1x1", [128, 832, 1, 1, 1], 128),
    ("Mixed_5c.Branch_0.Conv3d_0a_1x1", [384, 832, 1, 1, 1], 384),
    ("Mixed_5c.Branch_1.Conv3d_0a_1x1", [192, 832, 1, 1, 1], 192),
    ("Mixed_5c.Branch_1.Conv3d_0b_3x3", [384, 192, 3, 3, 3], 384),
    ("Mixed_5c.Branch_2.Conv3d_0a_1x1", [48, 832, 1, 1, 1], 48),
    ("Mixed_5c.Branch_2.Conv3d_0b_3x3", [128, 48, 3, 3, 3], 128),
    ("Mixed_5c.Branch_3.Conv3d_0b_1x1", [128, 832, 1, 1, 1], 128),
];

fn weights_file() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(i3d::DEFAULT_WEIGHTS)
}

#[test]
fn checkpoint_has_the_spec_tensors() {
    let tensors = candle_core::safetensors::load(weights_file(), &Device::Cpu).expect("bundled weights");
    assert_eq!(tensors.len(), 230, "tensor count");
    let mut expected: Vec<(String, Vec<usize>)> = Vec::new();
    for (unit, kernel, c) in UNITS {
        assert_eq!(kernel[0], c);
        expected.push((format!("{unit}.conv.weight"), kernel.to_vec()));
        for bn in ["bias", "running_mean", "running_var"] {
            expected.push((format!("{unit}.bn.{bn}"), vec![c]));
        }
    }
    expected.push(("Logits.Conv3d_0c_1x1.conv.weight".into(), vec![400, 1024, 1, 1, 1]));
    expected.push(("Logits.Conv3d_0c_1x1.conv.bias".into(), vec![400]));
    assert_eq!(expected.len(), 230);
    let mut learnable = 0;
    for (name, shape) in &expected {
        let t = tensors.get(name).unwrap_or_else(|| panic!("missing {name}"));
        assert_eq!(t.dims(), shape.as_slice(), "{name}");
        assert_eq!(t.dtype(), candle_core::DType::F32, "{name}");
        if !name.contains("running_") {
            learnable += t.elem_count();
        }
    }
    assert_eq!(learnable, 12_689_984, "learnable scalars");
    assert!(!tensors.keys().any(|k| k.ends_with("bn.weight")), "I3D's BatchNorm has no scale");
    // Statistics are plausible (variances positive), so the file is not a placeholder.
    for (unit, _, _) in UNITS {
        let var: Vec<f32> = tensors[&format!("{unit}.bn.running_var")].to_vec1().unwrap();
        assert!(var.iter().all(|v| *v > 0.0), "{unit}: non-positive variance");
    }
}

#[test]
fn model_loads_every_tensor_and_rejects_bad_options() {
    let opts = ModelOptions { weights: Some(weights_file()), ..Default::default() };
    let model = i3d::load(&opts).expect("load");
    assert_eq!(model.config().pool, i3d::DEFAULT_POOL);
    // A missing file is a no-input error, --pool 0 a usage error.
    let missing = ModelOptions { weights: Some("/nonexistent/i3d.safetensors".into()), ..Default::default() };
    let err = i3d::load(&missing).err().expect("missing file");
    assert_eq!(coinfer::error::kind_of(&err), coinfer::error::ErrorKind::NoInput, "{err:#}");
    let zero = ModelOptions { pool: Some(0), ..opts.clone() };
    let err = i3d::load(&zero).err().expect("pool 0");
    assert_eq!(coinfer::error::kind_of(&err), coinfer::error::ErrorKind::Usage, "{err:#}");
}

#[test]
fn default_weights_are_found() {
    // Without the override, the bundled file of this crate (tests run from target/…/deps).
    unsafe { std::env::remove_var(i3d::WEIGHTS_DIR_ENV) };
    assert_eq!(i3d::default_weights(), weights_file());
    let desc = coinfer::models::describe("i3d", &ModelOptions::default()).unwrap();
    assert!(desc.weights_present && desc.weights == weights_file());
    // The override names a folder; a missing file there is reported, not replaced by another.
    unsafe { std::env::set_var(i3d::WEIGHTS_DIR_ENV, "/nonexistent-dir") };
    let expect = std::path::Path::new("/nonexistent-dir").join("i3d-kinetics400-rgb.safetensors");
    assert_eq!(i3d::default_weights(), expect);
    assert!(!coinfer::models::describe("i3d", &ModelOptions::default()).unwrap().weights_present);
    unsafe { std::env::remove_var(i3d::WEIGHTS_DIR_ENV) };
}
