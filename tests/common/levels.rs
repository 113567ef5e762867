//! Every kernel path on one machine: a test binary runs its tests again under each kernel level below
//! the one its process runs (on an AVX-512 CPU: AVX2 and scalar; on an AVX2 one: scalar), each in a
//! child process with `COINFER_ISA` set (docs/engine.md, "Kernels and instruction sets").

use coinfer::engine::kernels::isa::{ISA_VAR, Isa, isa};

/// Runs this test binary again with the test-harness arguments `args` under every lower kernel level,
/// and panics with the child's output unless it passes at least `min_passed` tests. Does nothing in a
/// child, or in a run pinned to one level with `COINFER_ISA`.
pub fn rerun_on_lower_kernel_levels(args: &[&str], min_passed: usize) {
    if std::env::var_os(ISA_VAR).is_some() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    for level in Isa::ALL.into_iter().filter(|&l| l < isa()) {
        let out = std::process::Command::new(&exe).env(ISA_VAR, level.name()).args(args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let passed =
            stdout.lines().find_map(|l| l.strip_prefix("test result: ok. ")?.split_once(" passed")?.0.parse::<usize>().ok()).unwrap_or(0);
        assert!(
            out.status.success() && passed >= min_passed,
            "{ISA_VAR}={}: {passed} passed, {min_passed} expected:\n{stdout}\n{}",
            level.name(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
