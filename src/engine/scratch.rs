//! Per-thread scratch buffers for step outputs that only the next layer reads.
//!
//! A layer that owns its output buffer makes every step touch a fresh buffer per layer: for
//! CoX3D-M, 11 MB of depthwise and squeeze-excitation outputs per step, each line fetched for
//! ownership before it is written and read once after, pushing the frame windows and the weights out
//! of the caches. A layer given a [`Scratch`] slot writes into that slot's buffer instead, which all
//! the layers of its kind on the thread share, so it is hot in L2.
//!
//! The price is a shorter life: such an output stays valid only until the next layer with the same
//! slot steps on the same thread. Give a slot only to a layer whose output the next layer consumes
//! at once (X3D's depthwise conv → squeeze-excitation → 1×1 conv), never to one whose output waits
//! (a branch of a parallel layer, say).

use std::cell::UnsafeCell;

/// A shared output buffer: one per kind of layer that may use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scratch {
    /// Depthwise convolution outputs.
    Depthwise,
    /// Squeeze-excitation outputs.
    Excite,
}

thread_local! {
    static BUFFERS: [UnsafeCell<Vec<f32>>; 2] = const { [UnsafeCell::new(Vec::new()), UnsafeCell::new(Vec::new())] };
}

/// The slot's buffer on this thread, `len` values (contents unspecified; it grows only when a
/// longer one is asked for, so a steady state allocates nothing).
///
/// # Safety
/// No reference to an earlier buffer of the same slot on this thread may be used after this call.
pub unsafe fn buffer<'a>(slot: Scratch, len: usize) -> &'a mut [f32] {
    BUFFERS.with(|buffers| {
        // SAFETY: the caller guarantees that no earlier borrow of this slot is alive; the buffer
        // lives as long as the thread, which outlives every step it runs.
        unsafe {
            let v = &mut *buffers[slot as usize].get();
            if v.len() < len {
                v.resize(len, 0.0);
            }
            std::slice::from_raw_parts_mut(v.as_mut_ptr(), len)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_one_buffer_per_thread_that_keeps_its_contents() {
        let a = unsafe { buffer(Scratch::Depthwise, 8) };
        a.copy_from_slice(&[1.0; 8]);
        let ptr = a.as_ptr();
        let b = unsafe { buffer(Scratch::Excite, 8) };
        b.fill(2.0);
        let a = unsafe { buffer(Scratch::Depthwise, 4) };
        assert_eq!((a.as_ptr(), &a[..]), (ptr, &[1.0; 4][..]), "the same memory, untouched by the other slot");
        let elsewhere = std::thread::spawn(|| unsafe { buffer(Scratch::Depthwise, 8) }.as_ptr() as usize).join().unwrap();
        assert_ne!(elsewhere, ptr as usize, "each thread has its own");
    }
}
