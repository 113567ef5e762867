//! Per-thread scratch buffers for step outputs that only the next layer reads.
//!
//! A layer that owns its output buffer makes every step touch a fresh buffer per layer: for
//! CoX3D-M, 11 MB of depthwise and squeeze-excitation outputs per step, each line fetched for
//! ownership before it is written and read once after, pushing the frame windows and the weights out
//! of the caches. A layer given a [`Scratch`] slot writes into that slot's buffer instead, which all
//! the layers of its kind on the thread share, so it is hot in L2.
//!
//! The contract, enforced here and in `Sequential` (docs/engine.md, "Scratch outputs"): a slot's
//! buffer is *lent* to one layer (its [`ScratchOutput`]) at a time. The layer may lend it again to
//! itself (its previous output is dead by then: lending happens inside its step, which takes it by
//! `&mut`); another layer gets it only after the container that composes them has [`release`]d it,
//! which it does once the next layer has consumed the output and what that layer returned was
//! checked not to lie in the buffer. Anything else (two consecutive layers on one slot, an output
//! that waits in a parallel branch while another layer wants the slot, a layer stepped on its own)
//! makes the second lender's step an error instead of a use-after-free. A layer dropped frees what
//! it holds.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use candle_core::{Result, bail};

/// A shared output buffer: one per kind of layer that may use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scratch {
    /// Depthwise convolution outputs.
    Depthwise,
    /// Squeeze-excitation outputs.
    Excite,
}

/// Who may lend a slot: the slot and an identity no other layer has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lender {
    slot: Scratch,
    id: u64,
}

impl Lender {
    pub fn slot(&self) -> Scratch {
        self.slot
    }
}

/// A layer's right to write its step outputs into a scratch slot. A clone gets an identity of its
/// own, so that two layers never lend under one identity.
#[derive(Debug)]
pub struct ScratchOutput(Lender);

impl ScratchOutput {
    pub fn new(slot: Scratch) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        ScratchOutput(Lender { slot, id: NEXT_ID.fetch_add(1, Ordering::Relaxed) })
    }

    pub fn lender(&self) -> Lender {
        self.0
    }

    /// The slot's buffer on this thread, `len` values (contents unspecified; it grows only when a
    /// longer one than any thread has lent from the slot is asked for, so a steady state allocates
    /// nothing, even where layers move between threads), lent to this layer; an error while it is
    /// lent to another.
    ///
    /// # Safety
    /// The slice must not outlive the caller's mutable borrow of the layer that owns `self` (a step
    /// returns it as its output, tied to that borrow), so that no earlier slice from this lender is
    /// alive when it lends again.
    pub unsafe fn lend<'a>(&self, len: usize) -> Result<&'a mut [f32]> {
        let Lender { slot, id } = self.0;
        BUFFERS.with(|buffers| {
            // SAFETY: only this thread touches its buffers, and no slice into this one is alive:
            // it is free or lent to this lender (whose earlier slices are dead, by the caller's
            // contract); the buffer lives as long as the thread, which outlives every step it runs.
            unsafe {
                let buffer = &mut *buffers[slot as usize].get();
                if buffer.lent_to != FREE && buffer.lent_to != id {
                    bail!("the {slot:?} scratch output of another layer is still in use (a scratch output must be consumed by the next layer of a Sequential)");
                }
                buffer.lent_to = id;
                // Grow to the longest output any thread has lent from this slot (read, and written
                // only while it rises), so that a layer that moves to this thread in a steady state
                // (the pipeline's cut moving) finds the buffer long enough.
                let longest = &LONGEST[slot as usize];
                if len > longest.load(Ordering::Relaxed) {
                    longest.fetch_max(len, Ordering::Relaxed);
                }
                let want = longest.load(Ordering::Relaxed).max(len);
                if buffer.data.len() < want {
                    buffer.data.resize(want, 0.0);
                }
                Ok(std::slice::from_raw_parts_mut(buffer.data.as_mut_ptr(), len))
            }
        })
    }
}

/// Per slot, the longest output lent from it on any thread.
static LONGEST: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

impl Clone for ScratchOutput {
    fn clone(&self) -> Self {
        ScratchOutput::new(self.0.slot)
    }
}

impl Drop for ScratchOutput {
    /// A layer that goes away frees a slot still lent to it on this thread (nothing can borrow its
    /// outputs any more).
    fn drop(&mut self) {
        let Lender { slot, id } = self.0;
        // The thread's buffers may be gone already (a layer dropped while its thread exits).
        let _ = BUFFERS.try_with(|buffers| {
            // SAFETY: only this thread touches its buffers; no reference to the values is made.
            let buffer = unsafe { &mut *buffers[slot as usize].get() };
            if buffer.lent_to == id {
                buffer.lent_to = FREE;
            }
        });
    }
}

/// Mark `lender`'s slot free again, after the next layer consumed its output and returned `output`
/// (what flows on); an error, and the slot stays lent, if `output` lies in the slot's buffer. Does
/// nothing when the slot is not lent to `lender`.
///
/// # Safety
/// No slice lent to `lender` is used after this call, except through `output` (which is checked).
pub unsafe fn release(lender: Lender, output: &[f32]) -> Result<()> {
    BUFFERS.with(|buffers| {
        // SAFETY: only this thread touches its buffers; reading the fields creates no reference
        // to the values a lent slice points to.
        let buffer = unsafe { &mut *buffers[lender.slot as usize].get() };
        if buffer.lent_to != lender.id {
            return Ok(());
        }
        let lent = buffer.data.as_ptr_range();
        let out = output.as_ptr_range();
        if !output.is_empty() && out.start < lent.end && lent.start < out.end {
            bail!("a layer passed the {:?} scratch output of the layer before it on (it must consume it)", lender.slot);
        }
        buffer.lent_to = FREE;
        Ok(())
    })
}

/// `lent_to` of a free buffer (identities start at 1).
const FREE: u64 = 0;

struct Buffer {
    data: Vec<f32>,
    /// The lender whose output the buffer holds, or [`FREE`].
    lent_to: u64,
}

thread_local! {
    static BUFFERS: [UnsafeCell<Buffer>; 2] = const {
        [UnsafeCell::new(Buffer { data: Vec::new(), lent_to: FREE }), UnsafeCell::new(Buffer { data: Vec::new(), lent_to: FREE })]
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_one_buffer_per_thread_that_keeps_its_contents() {
        // SAFETY (every lend and release here): no slice is used after the next lend or release of
        // its lender.
        let (dw, ex) = (ScratchOutput::new(Scratch::Depthwise), ScratchOutput::new(Scratch::Excite));
        let a = unsafe { dw.lend(8) }.unwrap();
        a.copy_from_slice(&[1.0; 8]);
        let ptr = a.as_ptr();
        let b = unsafe { ex.lend(8) }.unwrap();
        b.fill(2.0);
        let a = unsafe { dw.lend(4) }.unwrap();
        assert_eq!((a.as_ptr(), &a[..]), (ptr, &[1.0; 4][..]), "the same memory, untouched by the other slot");
        let elsewhere = std::thread::spawn(move || unsafe { ScratchOutput::new(Scratch::Depthwise).lend(8) }.unwrap().as_ptr() as usize)
            .join()
            .unwrap();
        assert_ne!(elsewhere, ptr as usize, "each thread has its own");
        unsafe { release(dw.lender(), &[]).unwrap() };
        unsafe { release(ex.lender(), &[]).unwrap() };
    }

    #[test]
    fn a_lent_slot_is_refused_to_another_layer_until_released() {
        // SAFETY (every lend and release here): the slices are only compared, never used after a
        // lend that may move the buffer.
        let (first, second) = (ScratchOutput::new(Scratch::Depthwise), ScratchOutput::new(Scratch::Depthwise));
        let out = unsafe { first.lend(16) }.unwrap();
        let (start, len) = (out.as_ptr(), out.len());
        assert!(unsafe { second.lend(16) }.is_err(), "lent to the first");
        assert!(unsafe { first.lend(16) }.is_ok(), "the first lends to itself again");
        assert!(unsafe { first.clone().lend(16) }.is_err(), "a clone is another layer");
        // An output that lies in the buffer keeps it lent.
        // SAFETY: a view of memory lent to `first`, only compared.
        let passed_on = unsafe { std::slice::from_raw_parts(start, len) };
        assert!(unsafe { release(first.lender(), passed_on) }.is_err());
        assert!(unsafe { second.lend(16) }.is_err());
        unsafe { release(second.lender(), &[]).unwrap() };
        assert!(unsafe { second.lend(16) }.is_err(), "only the lender's release frees it");
        unsafe { release(first.lender(), &[1.0]).unwrap() };
        assert!(unsafe { second.lend(16) }.is_ok());
        drop(second);
        assert!(unsafe { first.lend(16) }.is_ok(), "freed by the lender's drop");
    }
}
