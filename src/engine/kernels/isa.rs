//! The one instruction-set choice of the kernels: detected once, cached, and lowered by the
//! `COINFER_ISA` environment variable (`scalar`, `avx2` or `avx512`) so that tests can run every path
//! on one machine. Every kernel that has a vector form asks [`isa`] which to run.

use std::sync::OnceLock;

/// Kernel paths, slowest first. Each level's kernels give the same bits as the scalar ones, except
/// the packed GEMM's summation order (AVX2 and AVX-512 alike) and the AVX-512 forms that say otherwise
/// (the swish lanes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Portable loops (the compiler's baseline vectorisation).
    Scalar,
    /// AVX2 with FMA: packed GEMM weights (16-column panels).
    Avx2,
    /// AVX-512F: packed GEMM weights, masked 16-lane kernels, blocked depthwise frames.
    Avx512,
}

/// The environment variable that lowers the kernel level.
pub const ISA_VAR: &str = "COINFER_ISA";

impl Isa {
    pub const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::Avx512];

    /// The name `COINFER_ISA` takes.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// The best level this CPU has.
    pub fn detected() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Scalar
    }

    /// The level `COINFER_ISA=value` asks for on a CPU whose best is `detected`: the requested level
    /// capped at `detected`, with a warning when capped; an unknown value is an error.
    pub fn requested(value: &str, detected: Isa) -> Result<(Isa, Option<String>), String> {
        let wanted = Isa::ALL
            .into_iter()
            .find(|isa| isa.name() == value.trim().to_ascii_lowercase())
            .ok_or_else(|| format!("{ISA_VAR}={value:?} is not a kernel level; use one of scalar, avx2, avx512"))?;
        if wanted > detected {
            let warning = format!("{ISA_VAR}={}: this CPU has only {}; using {}", wanted.name(), detected.name(), detected.name());
            return Ok((detected, Some(warning)));
        }
        Ok((wanted, None))
    }
}

/// The kernel level of this process: the detected one, or the lower one `COINFER_ISA` names. Read
/// once; an unknown or too high value is reported on stderr once and the detected level is used
/// (capped to it, for too high).
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        let detected = Isa::detected();
        let Ok(value) = std::env::var(ISA_VAR) else { return detected };
        match Isa::requested(&value, detected) {
            Ok((isa, warning)) => {
                if let Some(warning) = warning {
                    eprintln!("warning: {warning}");
                }
                isa
            }
            Err(e) => {
                eprintln!("warning: {e}; using {}", detected.name());
                detected
            }
        }
    })
}

/// Whether the AVX-512 kernels run (the CPU has AVX-512F and `COINFER_ISA` does not lower it).
#[inline]
pub fn avx512() -> bool {
    isa() >= Isa::Avx512
}

/// Whether the AVX2 (with FMA) kernels, or better, run.
#[inline]
pub fn avx2() -> bool {
    isa() >= Isa::Avx2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_level_is_taken_and_capped_at_the_cpu() {
        assert_eq!(Isa::requested("scalar", Isa::Avx512), Ok((Isa::Scalar, None)));
        assert_eq!(Isa::requested(" AVX2 ", Isa::Avx512), Ok((Isa::Avx2, None)));
        assert_eq!(Isa::requested("avx512", Isa::Avx512), Ok((Isa::Avx512, None)));
        let (isa, warning) = Isa::requested("avx512", Isa::Avx2).unwrap();
        assert_eq!(isa, Isa::Avx2);
        assert!(warning.unwrap().contains("only avx2"));
        assert_eq!(Isa::requested("avx2", Isa::Scalar).unwrap().0, Isa::Scalar);
    }

    #[test]
    fn an_unknown_level_is_an_error_that_names_the_choices() {
        for value in ["", "sse", "avx-512", "avx512f"] {
            let e = Isa::requested(value, Isa::Avx512).unwrap_err();
            assert!(e.contains("COINFER_ISA") && e.contains("scalar, avx2, avx512"), "{value}: {e}");
        }
    }

    /// The engine's unit tests again under every level below this process's, each in a child
    /// process with `COINFER_ISA` set, so that every kernel path is checked on one machine.
    #[test]
    fn engine_unit_tests_pass_on_every_lower_level() {
        if std::env::var_os(ISA_VAR).is_some() {
            return; // a child, or a run pinned to one level
        }
        let exe = std::env::current_exe().unwrap();
        for level in Isa::ALL.into_iter().filter(|&l| l < isa()) {
            let out = std::process::Command::new(&exe)
                .env(ISA_VAR, level.name())
                .args(["engine::", "--skip", "engine_unit_tests_pass_on_every_lower_level"])
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{ISA_VAR}={}:\n{stdout}\n{}", level.name(), String::from_utf8_lossy(&out.stderr));
            assert!(stdout.contains("test result: ok.") && !stdout.contains(" 0 passed"), "{ISA_VAR}={}: {stdout}", level.name());
        }
    }

    #[test]
    fn the_process_level_is_at_most_the_detected_one() {
        assert!(isa() <= Isa::detected());
        assert_eq!(avx512(), isa() == Isa::Avx512);
    }
}
