//! How the intake stores a job: a body in the slot and a small tag in the
//! slot's ready byte (0 there means "not written yet"). A pool's own jobs
//! are stored whole with the tag 1 ([`Whole`]); a job type whose variant
//! fits in a few bits packs it into the tag and keeps the slot smaller (the
//! events layer's 16-byte events, `events.rs`).

use std::num::NonZeroU8;

/// Splits jobs of type `T` into a tag and a body, and joins them again.
pub trait Packing<T>: 'static {
    /// What one intake slot holds.
    type Body: Send;

    /// Splits `job`; its tag rides in the slot's ready byte.
    fn pack(job: T) -> (NonZeroU8, Self::Body);

    /// Joins what [`Packing::pack`] gave.
    ///
    /// # Safety
    /// `tag` and `body` are the two halves of one `pack` result.
    unsafe fn unpack(tag: NonZeroU8, body: Self::Body) -> T;
}

/// Stores the job as it is (the tag says only "ready").
pub struct Whole;

impl<T: Send> Packing<T> for Whole {
    type Body = T;

    fn pack(job: T) -> (NonZeroU8, T) {
        (NonZeroU8::MIN, job)
    }

    unsafe fn unpack(_tag: NonZeroU8, body: T) -> T {
        body
    }
}
